"""Correction: re-index a time range of a sequence view from its batch source.

    spark-submit transformations/correction.py --repo feature_repo --view customer_purchases \
        --start 2010-03-01 --end 2010-03-31T23:59:59

For every entity, its stored events in [start, end] are replaced, in one atomic step, by the
source's events of that range (events the real-time path missed come in, wrongly indexed ones go),
together with the older source events its sequence still holds, so nothing is left short. Entities
with stored events in the range but none in the source lose them. Events outside the range, and
real-time events newer than ``end``, are untouched. Idempotent.
"""

from __future__ import annotations

import functools
import sys
from datetime import datetime
from functools import partial
from typing import Any, Optional, Set

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.offline.indexing import IndexSummary, newest_before_spark, timed, write_spark
from feast_sequence.output import progress
from feast_sequence.storage.append import plan_remove_range
from feast_sequence.storage.client import redis_client
from feast_sequence.storage.compaction import resend_refused
from feast_sequence.storage.conversion import datetime_to_us
from feast_sequence.storage.drivers import drive
from feast_sequence.storage.entity_keys import entity_column_bytes
from feast_sequence.storage.keys import sequence_keys_of, view_prefix, view_scan_pattern, zset_key_of
from feast_sequence.storage.redis_io import Access, execute, replica_acks, retry_policy, run_round_trip
from feast_sequence.transformations._job import (
    EPOCH,
    Gate,
    JobContext,
    check_gate,
    report,
    spark_submit,
)
from feast_sequence.transformations.selection import EventSelection, LastN


def select_correction(
    settings: SequenceSettings, events: Any, start: datetime, end: datetime, selection: EventSelection
) -> Any:
    """DataFrame in (source events up to ``end``), DataFrame out (the range plus what refills it)."""
    from pyspark.sql import functions as F

    ts = F.col(settings.timestamp_field)
    chosen = selection.select(settings, events, end)
    in_range = chosen.filter(ts >= F.lit(start))
    return in_range.unionByName(newest_before_spark(settings, chosen, start))


def run_correction(
    context: JobContext,
    start: datetime,
    end: datetime,
    selection: EventSelection = LastN(),  # noqa: B008  (a frozen value object)
    gate: Optional[Gate] = None,
) -> IndexSummary:
    settings = context.settings
    range_us = (datetime_to_us(start), datetime_to_us(end))

    def run() -> Any:
        events = select_correction(settings, context.events(EPOCH, end), start, end, selection).cache()
        read = events.count()
        report("correction", settings.view_name, f"{read:,} events selected to re-index {start} .. {end}")
        check_gate(gate, settings, events)
        watch = functools.partial(progress, f"correct {settings.view_name}", read)
        written = write_spark(context.target, events, replace_range_us=range_us, watch=watch)
        keys = [k for k, _ in settings.join_keys]
        indexed = set(entity_column_bytes(settings.join_keys, events.select(*keys).distinct().toPandas()))
        events.unpersist()
        cleared = _clear_range_elsewhere(context, indexed, range_us)
        report(
            "correction",
            settings.view_name,
            f"cleared the range for {cleared:,} entities absent from the source",
        )
        return read, written

    return timed(run)


def _clear_range_elsewhere(context: JobContext, indexed: Set[bytes], range_us: Any) -> int:
    """Remove the range from stored sequences of entities the source has no events for."""

    settings, project = context.settings, context.target.project
    client = redis_client(context.target.online_config)
    prefix = view_prefix(project, settings.view_name)
    retry, acks = retry_policy(context.target.online_config), replica_acks(context.target.online_config)
    # A sequence's keys are its tail, identity hash and block: any of them names the sequence.
    sequences = {
        zset_key_of(k) for k in client.scan_iter(match=view_scan_pattern(project, settings.view_name), count=1000)
    }
    commands = [
        plan_remove_range(settings, sequence_keys_of(z), range_us)
        for z in sorted(sequences)
        if z[len(prefix) : -len(b"}:z")] not in indexed
    ]
    for i in range(0, len(commands), 1000):
        chunk = commands[i : i + 1000]
        replies = execute(client, chunk, f"clearing a range of '{settings.view_name}'", retry, acks, Access.WRITE)
        drive(resend_refused(settings, chunk, replies, retry, acks), partial(run_round_trip, client))
    return len(commands)


if __name__ == "__main__":
    sys.exit(spark_submit("correct"))
