"""Offline indexing jobs on Spark (``feast_sequence.transformations``): backfill, correction,
enrichment, and the pluggable event selection they share.

Each job is a DataFrame-in, DataFrame-out selection. ``feast-sequence <job>`` runs it
(``feast_sequence.cli``), and so does ``spark-submit transformations/<job>.py`` with the same
options. See docs/offline.md.
"""

from feast_sequence.transformations._job import JobContext, open_view

__all__ = ["JobContext", "open_view"]
