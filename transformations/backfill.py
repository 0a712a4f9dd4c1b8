"""Backfill: bootstrap a sequence view from the last D days of its batch source.

    spark-submit transformations/backfill.py --repo feature_repo --view customer_purchases --days 30
    feast-sequence backfill --repo feature_repo --view customer_purchases --days 30

Idempotent: re-running writes the same events, which the store absorbs.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, List, Optional

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.offline.indexing import IndexSummary, timed, write_spark
from feast_sequence.transformations._job import (
    Gate,
    JobContext,
    add_common_arguments,
    add_gate_arguments,
    add_selection_arguments,
    check_gate,
    gate_from,
    open_view,
    parse_time,
    report,
    selection_from,
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
        written = write_spark(context.target, events)
        events.unpersist()
        return read, written

    return timed(run)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--days", type=float, required=True, help="how far back from --end")
    parser.add_argument("--end", type=parse_time, help="ISO time (default: now, UTC)")
    add_selection_arguments(parser)
    add_gate_arguments(parser)
    args = parser.parse_args(argv)
    summary = run_backfill(open_view(args.repo, args.view), args.days, args.end, selection_from(args), gate_from(args))
    report("backfill", args.view, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
