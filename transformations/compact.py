"""Compact: merge the tails of stored sequences into their compressed blocks (docs/storage-layout.md).

    feast-sequence compact [--repo feature_repo] [--view customer_purchases] [--every 300]

Writers already compact a sequence once its tail holds ``compact_after`` events (the online store
option), so this job only picks up the rest: tails of sequences that stopped receiving events below
the threshold, and sequences stored before blocks existed (format 2), which it converts in place,
online. Without ``--view`` it compacts every sequence view of the repository; with ``--every`` it
runs again every so many seconds until stopped. Stopping or never running it is safe: reads stay
exact, and each sequence keeps at most ``compact_after - 1`` events in its tail (at most
``max_length`` with ``compact_after: 0``) at the tail's cost per event.
"""

from __future__ import annotations

import sys
from typing import Optional

from feast_sequence.definitions.settings import sequence_settings
from feast_sequence.transformations._job import report, repository_sequence_views, spark_submit


def run_compaction(repo: str, view_name: Optional[str] = None) -> int:
    """Compact the repository's sequence views (or one); returns the sequences compacted."""
    store, online, views = repository_sequence_views(repo, view_name)
    total = 0
    for view in views:
        compacted = online.compact_sequence_view(store.config, sequence_settings(view))
        report("compact", view.name, f"{compacted:,} sequence(s) compacted")
        total += compacted
    return total


if __name__ == "__main__":
    sys.exit(spark_submit("compact"))
