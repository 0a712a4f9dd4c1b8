"""Offline indexing jobs on Spark (``feast_sequence.transformations``): backfill, correction,
enrichment, and the pluggable event selection they share.

Each job is a DataFrame-in, DataFrame-out selection plus a thin entry point that runs with
``spark-submit transformations/<job>.py`` or ``feast-sequence <job>``. See docs/offline.md.
"""

from feast_sequence.transformations._job import JobContext, open_view

__all__ = ["JobContext", "open_view"]
