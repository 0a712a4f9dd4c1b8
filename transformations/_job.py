"""What every offline job shares: opening the repository, reading a view's events on Spark, and
reporting progress."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Optional, Sequence

from feast import FeatureStore

from feast_sequence.definitions.settings import SequenceSettings, sequence_settings
from feast_sequence.errors import SequenceConfigurationError, SequenceValidationError
from feast_sequence.offline.indexing import IndexTarget
from feast_sequence.offline.spark import spark_session, uses_spark
from feast_sequence.online.provider import sequence_provider
from feast_sequence.transformations.selection import EventSelection, LastN, TopScored

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class JobContext:
    store: FeatureStore
    view: Any
    settings: SequenceSettings
    target: IndexTarget

    def events(self, start: datetime, end: datetime, without: Sequence[str] = ()) -> Any:
        """The view's source events in [start, end] as a Spark DataFrame (``without`` some fields,
        e.g. ones being added to the source)."""
        config = self.store.config
        if not uses_spark(config):
            raise SequenceConfigurationError("Offline jobs run on Spark: set 'offline_store: type: spark'.")
        # Start the session here, before Feast's offline store would start one without our settings.
        spark_session(config)
        settings = self.settings
        if without:
            settings = replace(settings, fields=tuple(f for f in settings.fields if f.name not in without))
        return sequence_provider(self.store).pull_events(config, self.view, settings, start, end).to_spark_df()


def open_view(repo: str, view_name: str) -> JobContext:
    store = FeatureStore(repo_path=repo)
    view = store.get_feature_view(view_name)
    settings = sequence_settings(view)
    return JobContext(
        store,
        view,
        settings,
        IndexTarget(store.config.online_store, store.project, settings, store.config.entity_key_serialization_version),
    )


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default="feature_repo", help="feature repository (feature_store.yaml)")
    parser.add_argument("--view", required=True, help="sequence view name")


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--selection", choices=["last-n", "top-scored"], default="last-n")
    parser.add_argument("--score", help="top-scored: Spark SQL expression, e.g. 'quantity * unit_price'")
    parser.add_argument("--score-days", type=int, help="top-scored: look back this many days")
    parser.add_argument("--score-n", type=int, help="top-scored: events per entity")


def selection_from(args: argparse.Namespace) -> EventSelection:
    if args.selection == "last-n":
        return LastN()
    if not (args.score and args.score_days and args.score_n):
        raise SystemExit("--selection top-scored needs --score, --score-days and --score-n")
    return TopScored(args.score, args.score_days, args.score_n)


def report(job: str, view: str, summary: Any, out: Optional[Any] = None) -> None:
    print(f"[feast-sequence {job}] {view}: {summary}", file=out, flush=True)


#: A validation gate: given the view's settings and the selected events, a report.
Gate = Callable[[SequenceSettings, Any], Any]


def check_gate(gate: Optional[Gate], settings: SequenceSettings, events: Any) -> None:
    """Run the gate on the events about to be written; a failing batch is not written."""
    if gate is None:
        return
    result = gate(settings, events)
    print(result, flush=True)
    if not result.success:
        raise SequenceValidationError(
            f"The events selected for '{settings.view_name}' failed validation; nothing was written.\n{result}"
        )


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--validate", action="store_true", help="validate the selected events first (event-source suite)"
    )
    parser.add_argument("--report-dir", help="folder for the validation report (GE Data Docs)")


def gate_from(args: argparse.Namespace) -> Optional[Gate]:
    if not args.validate:
        return None
    from pathlib import Path

    from feast_sequence.validations.event_source import validate_event_source

    report_dir = Path(args.report_dir) if args.report_dir else None
    return lambda settings, events: validate_event_source(settings, events, report_dir=report_dir)
