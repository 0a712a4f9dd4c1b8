"""What a sequence view, its settings and enrichments are: typed definitions, no I/O."""
