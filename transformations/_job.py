"""What every offline job shares: opening the repository, reading a view's events on Spark, and
reporting progress."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from feast import FeatureStore

from feast_sequence.definitions.settings import SequenceSettings, is_sequence_view, sequence_settings
from feast_sequence.errors import SequenceConfigurationError, SequenceDefinitionError, SequenceValidationError
from feast_sequence.feast_internals import store_provider
from feast_sequence.monitoring import erasure
from feast_sequence.offline.indexing import IndexTarget
from feast_sequence.offline.spark import spark_session, uses_spark
from feast_sequence.online.provider import sequence_provider
from feast_sequence.online.store import SequenceRedisOnlineStore

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class JobContext:
    store: FeatureStore
    view: Any
    settings: SequenceSettings
    target: IndexTarget
    verbose: bool = False  # Spark's own logging (`--verbose`), else quiet (offline/spark.py)

    def spark(self) -> Any:
        """The job's Spark session: the repository's Spark offline store settings if it has them."""
        return spark_session(self.store.config, self.verbose)

    def events(self, start: datetime, end: datetime, without: Sequence[str] = ()) -> Any:
        """The view's source events in [start, end] as a Spark DataFrame (``without`` some fields,
        e.g. ones being added to the source)."""
        config = self.store.config
        if not uses_spark(config):
            raise SequenceConfigurationError("Offline jobs run on Spark: set 'offline_store: type: spark'.")
        # Start the session here, before Feast's offline store would start one without our settings.
        self.spark()
        settings = self.settings
        if without:
            settings = replace(settings, fields=tuple(f for f in settings.fields if f.name not in without))
        return sequence_provider(self.store).pull_events(config, self.view, settings, start, end).to_spark_df()


def open_view(repo: str, view_name: str, verbose: bool = False) -> JobContext:
    """The job's view, once Redis holds every recorded erasure again: a Redis that lost its data
    (restarted without persistence) gets its markers back before the job writes (docs/privacy.md)."""
    store = FeatureStore(repo_path=repo)
    erasure.reapply(store)
    view = store.get_feature_view(view_name)
    settings = sequence_settings(view)
    return JobContext(
        store,
        view,
        settings,
        IndexTarget(store.config.online_store, store.project, settings, store.config.entity_key_serialization_version),
        verbose,
    )


def report(job: str, view: str, summary: Any, out: Optional[Any] = None) -> None:
    print(f"[feast-sequence {job}] {view}: {summary}", file=out, flush=True)


def finished(job: str, view: str, summary: Any) -> int:
    """Report a job's summary; returns its exit code (0: it ran to the end)."""
    report(job, view, summary)
    return 0


#: A validation gate: given the view's settings and the selected events, a report.
Gate = Callable[[SequenceSettings, Any], Any]


def check_gate(gate: Optional[Gate], settings: SequenceSettings, events: Any) -> None:
    """Run the gate on the events about to be written; a failing batch is not written."""
    if gate is None:
        return
    result = gate(settings, events)
    print(result, flush=True)
    if not result.success:
        failed = "; ".join(str(f) for f in result.failures)
        raise SequenceValidationError(
            f"The events selected for '{settings.view_name}' failed validation ({failed}); nothing was written."
        )


@dataclass(frozen=True)
class EventSourceGate:
    """The ``--validate`` gate: the event-source suite with the command line's checks."""

    checks: Any  # feast_sequence.validations.event_source.EventSourceChecks
    report_dir: Optional[Path] = None

    def __call__(self, settings: SequenceSettings, events: Any) -> Any:
        from feast_sequence.validations.event_source import validate_event_source

        return validate_event_source(settings, events, self.checks, report_dir=self.report_dir)


def spark_submit(command: str) -> int:
    """The entry of ``spark-submit transformations/<job>.py ARGS``: runs ``feast-sequence <command>
    ARGS`` through the installed console script, so each option is declared once (in
    ``feast_sequence.cli``) and no job imports the command-line layer above it."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="feast-sequence")
    return int(script.load()([command, *sys.argv[1:]]))


def repository_sequence_views(repo: str, view_name: Optional[str] = None) -> tuple[FeatureStore, Any, list[Any]]:
    """The repository's store, its feast-sequence online store and its sequence views (or the one
    named); refuses another online store or an unknown view."""
    store = FeatureStore(repo_path=repo)
    online = store_provider(store).online_store
    if not isinstance(online, SequenceRedisOnlineStore):
        raise SequenceConfigurationError(f"The online store is {type(online).__name__}, not feast-sequence's.")
    views = [v for v in store.list_feature_views() if is_sequence_view(v)]
    if view_name is not None:
        views = [v for v in views if v.name == view_name]
        if not views:
            raise SequenceDefinitionError(f"Repository {repo} has no sequence view '{view_name}'.")
    return store, online, views
