"""Verify: find stored sequences that are corrupt or incoherent, and with ``--repair`` rebuild them.

    feast-sequence verify [--repo feature_repo] [--view customer_purchases] [--repair [--end ISO]]

Reads every stored sequence of the view (default: every sequence view) and reports each problem
(online/verify.py): a block that fails its checksum or does not decode, a header that does not match
its body, tail events that do not decode, identity hash entries pointing nowhere. Exit code 0 when
none is found, 1 otherwise. ``--repair`` (Spark) then deletes those entities' sequences and writes
their events again from the view's batch source, as a backfill does (the window: the view's TTL
before ``--end``, or the whole source); events pushed meanwhile merge as usual. A repaired entity
reads empty, then whole, while its events are written.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from typing import Any, List, Optional, Sequence

import pandas as pd

from feast_sequence.definitions.settings import sequence_settings
from feast_sequence.offline.indexing import Written, write_spark
from feast_sequence.online.verify import Finding, delete_sequences, verify_view
from feast_sequence.storage.client import redis_client
from feast_sequence.transformations._job import JobContext, open_view, report, repository_sequence_views, spark_submit

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def run_verify(
    repo: str,
    view_name: Optional[str] = None,
    repair: bool = False,
    end: Optional[datetime] = None,
    verbose: bool = False,
) -> List[Finding]:
    """The problems found in the repository's stored sequences (or one view's), each reported; with
    ``repair``, the entities concerned are rebuilt from the offline source afterwards."""
    store, online, views = repository_sequence_views(repo, view_name)
    client = redis_client(store.config.online_store)
    found: List[Finding] = []
    for view in views:
        findings = verify_view(client, store.config, sequence_settings(view))
        for finding in findings:
            report("verify", view.name, finding)
        entities = len({f.key for f in findings})
        report("verify", view.name, f"{len(findings):,} problem(s) in {entities:,} stored sequence(s)")
        if repair and findings:
            deleted = delete_sequences(client, store.config, [f.key for f in findings])
            written = rebuild(open_view(repo, view.name, verbose), findings, end)
            erased = f" ({written.erased:,} dropped as erased)" if written.erased else ""
            rebuilt = f"{written.events:,} events written{erased}"
            summary = f"repaired {entities:,} sequence(s): {deleted:,} keys deleted, {rebuilt}"
            report("verify", view.name, summary)
        found.extend(findings)
    return found


def rebuild(context: JobContext, findings: Sequence[Finding], end: Optional[datetime] = None) -> Written:
    """Write the events of the entities of ``findings`` again from the batch source (their sequences
    deleted first), over the view's TTL before ``end`` or the whole source; returns the events written
    (and those the store dropped because their entity was erased)."""
    settings = context.settings
    end = end or datetime.now(timezone.utc)
    start = end - timedelta(microseconds=settings.ttl_us) if settings.ttl_us else _EPOCH
    keys = [name for name, _ in settings.join_keys]
    rows = pd.DataFrame([f.entity for f in findings], columns=keys).drop_duplicates()
    from pyspark.sql import functions as F

    events: Any = context.events(start, end)
    entities = context.spark().createDataFrame(rows)
    entities = entities.select(*(F.col(k).cast(events.schema[k].dataType).alias(k) for k in keys))
    return write_spark(context.target, events.join(F.broadcast(entities), on=keys, how="inner"))


if __name__ == "__main__":
    sys.exit(spark_submit("verify"))
