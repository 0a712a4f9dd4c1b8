"""Backfill: bootstrap a sequence view from the last D days of its batch source.

    spark-submit transformations/backfill.py --repo feature_repo --view customer_purchases --days 30
    feast-sequence backfill --repo feature_repo --view customer_purchases --days 30

Idempotent: re-running writes the same events, which the store absorbs.
"""

from __future__ import annotations

import functools
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.offline.indexing import IndexSummary, timed, write_spark
from feast_sequence.output import progress
from feast_sequence.transformations._job import (
    Gate,
    JobContext,
    check_gate,
    report,
    spark_submit,
)
from feast_sequence.transformations.selection import EventSelection, LastN

#: Said when a backfill selects nothing: most often, historical data and the default end (now).
NOTHING_SELECTED = (
    "; the source has no event in that range (or the selection kept none): --end defaults to now, "
    "so for historical data pass --end within it"
)


def select_backfill(settings: SequenceSettings, events: Any, end: datetime, selection: EventSelection) -> Any:
    """DataFrame in (the window's source events), DataFrame out (the events to index)."""
    return selection.select(settings, events, end)


def run_backfill(
    context: JobContext,
    days: float,
    end: Optional[datetime] = None,
    selection: EventSelection = LastN(),  # noqa: B008  (a frozen value object)
    gate: Optional[Gate] = None,
) -> IndexSummary:
    end = end or datetime.now(timezone.utc)
    start = end - timedelta(days=days)

    def run() -> Any:
        events = select_backfill(context.settings, context.events(start, end), end, selection).cache()
        read = events.count()
        report(
            "backfill",
            context.settings.view_name,
            f"{read:,} events selected from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
            + ("" if read else NOTHING_SELECTED),
        )
        check_gate(gate, context.settings, events)
        watch = functools.partial(progress, f"backfill {context.settings.view_name}", read)
        written = write_spark(context.target, events, watch=watch)
        events.unpersist()
        return read, written

    return timed(run)


if __name__ == "__main__":
    sys.exit(spark_submit("backfill"))
