"""Serving logs: what a use case served, recorded off the request path and written through Feast.

A use case (``SequenceUseCase``) declared with Feast's ``logging_config=LoggingConfig(destination,
sample_rate)`` has each sampled request logged, one row per entity row: the entity keys, the request
time, the use case's version (a hash of its configuration) and, per sequence view, the served
sequences as list columns (before padding; the event timestamps always included).

The request path only draws the sample and puts references to what it already built on a bounded
queue (no conversion, no I/O). A background thread, started on the first logged request (never at
import, so each ``feast serve`` worker starts its own after the fork), turns them into Arrow tables
and writes them with Feast's ``FeatureStore.write_logged_features``. A full queue or a failing
destination drops rows and counts them (``feast_sequence_log_rows_dropped_total``); a request never
waits for the log nor fails because of it.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.feature_logging import LOG_DATE_FIELD, LOG_TIMESTAMP_FIELD, REQUEST_ID_FIELD
from feast.value_type import ValueType

from feast_sequence.definitions.use_case import TAG_USE_CASE, Operator
from feast_sequence.serving import log_metrics as metrics
from feast_sequence.serving.batch import SequenceBatch
from feast_sequence.serving.views import ServedView, ViewPlan
from feast_sequence.storage.conversion import ARROW_ELEMENT, column_values

#: Columns of a log row besides entity keys and sequences (Feast's own three, then ours).
USE_CASE_FIELD = "__use_case"
USE_CASE_VERSION_FIELD = "__use_case_version"
LOG_TIMESTAMP = LOG_TIMESTAMP_FIELD
LOG_DATE = LOG_DATE_FIELD
REQUEST_ID = REQUEST_ID_FIELD
TIMESTAMP_LIST = pa.list_(pa.timestamp("us", tz="UTC"))

_log = logging.getLogger(__name__)


def use_case_version(service: Any) -> str:
    """A stable hash of what shapes a use case's response: its use-case settings and its feature
    refs. Equal for equal configurations, across processes and `feast apply`s."""
    refs = sorted(f"{p.name_to_use()}:{f.name}" for p in service.feature_view_projections for f in p.features)
    text = json.dumps({"use_case": (service.tags or {}).get(TAG_USE_CASE), "features": refs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def logged_column(view: str, field: str) -> str:
    """The log column of one view's field: Feast's full feature name."""
    return f"{view}__{field}"


@dataclass(frozen=True)
class LoggedView:
    """One sequence view of a served request, as the log needs it (references, converted later)."""

    name: str
    join_keys: Tuple[Tuple[str, ValueType], ...]
    timestamp_field: str
    outputs: Tuple[str, ...]  # the served fields (requested, then enriched), plus the timestamp field
    batch: SequenceBatch  # after enrichment: one row per unique entity (per request row with candidates)
    plan: ViewPlan  # owner() maps the request's rows to the batch's rows
    request_columns: Tuple[Tuple[str, ValueType, bool], ...] = ()  # (column, type, is a list) a filter read


@dataclass(frozen=True)
class ServedRequest:
    service: Any
    config: Any
    entity_columns: Mapping[str, Sequence[Any]]
    request_us: int
    views: Tuple[LoggedView, ...]

    @property
    def rows(self) -> int:
        return len(next(iter(self.entity_columns.values()))) if self.entity_columns else 0


def record(
    config: Any, service: Any, entity_columns: Mapping[str, Sequence[Any]], views: Sequence[ServedView], now_us: int
) -> None:
    """Called by the serving pipeline once per request (``views``: what it served, ``now_us``: the
    request time it read at); logs the request if the use case logs and the sample draws it."""
    logging_config = getattr(service, "logging_config", None)
    if logging_config is None or random.random() >= logging_config.sample_rate:
        return
    logged = tuple(
        LoggedView(
            view.plan.name,
            view.plan.settings.join_keys,
            view.plan.settings.timestamp_field,
            tuple(dict.fromkeys([*view.plan.outputs, view.plan.settings.timestamp_field])),
            view.batch,
            view.plan,
            request_columns(view.plan),
        )
        for view in views
    )
    default_logger().submit(ServedRequest(service, config, entity_columns, now_us, logged))


def request_columns(plan: ViewPlan) -> Tuple[Tuple[str, ValueType, bool], ...]:
    """The request columns a view's filters read (``FromRequest``): logged beside the entity keys, so
    that each logged row can be replayed with its own candidate."""
    types = {f.name: f.value_type for f in plan.settings.fields}
    return tuple((str(c.from_request), types[c.field], Operator(c.op).takes_list) for c in plan.spec.request_conditions)


class ServingLogger:
    """A bounded queue of served requests and the thread that writes them, grouped by use case.

    ``max_queued``: requests waiting to be written (more are dropped); ``flush_interval_s``: how
    often the queue is written out; ``max_rows_per_write``: rows written at once at most.
    """

    def __init__(self, max_queued: int = 10_000, flush_interval_s: float = 5.0, max_rows_per_write: int = 100_000):
        self.flush_interval_s = flush_interval_s
        self.max_rows_per_write = max_rows_per_write
        self._queue: "queue.Queue[ServedRequest]" = queue.Queue(maxsize=max_queued)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._wake = threading.Event()
        self._stores: Dict[int, Any] = {}
        self.last_error: Optional[BaseException] = None

    def submit(self, request: ServedRequest) -> None:
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            metrics.LOG_ROWS_DROPPED.labels(request.service.name, metrics.Drop.QUEUE_FULL.value).inc(request.rows)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every request queued so far is written (or dropped); whether it was in time."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="feast-sequence-log-flusher", daemon=True)
                self._thread.start()
                atexit.register(self.flush, 10.0)

    def _run(self) -> None:
        # The thread sleeps between writes rather than waiting on the queue: a waiting reader would
        # be woken by every put, and each wake-up takes the interpreter from a request.
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            while True:
                pending: List[ServedRequest] = []
                rows = 0
                while rows < self.max_rows_per_write:
                    try:
                        pending.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                    rows += pending[-1].rows
                if not pending:
                    break
                try:
                    self.write(pending)
                finally:
                    for _ in pending:
                        self._queue.task_done()

    def write(self, requests: Sequence[ServedRequest]) -> None:
        """Write requests to their use cases' destinations; a failing write drops its rows, counted
        and logged with its cause, and leaves the other use cases' writes alone."""
        groups: Dict[Tuple[str, str, int], List[ServedRequest]] = {}
        for request in requests:
            # A registry refresh can change the use case between requests: one table per version.
            key = (request.config.project, request.service.name, id(request.service))
            groups.setdefault(key, []).append(request)
        for (_, name, _), group in groups.items():
            rows = sum(r.rows for r in group)
            try:
                table = log_table(group)
                self._store(group[-1].config).write_logged_features(logs=table, source=group[-1].service)
            except Exception as error:  # the destination's failure must not reach requests: count it
                self.last_error = error
                metrics.LOG_ROWS_DROPPED.labels(name, metrics.Drop.WRITE_FAILED.value).inc(rows)
                _log.warning("Dropped %d logged rows of use case '%s': %s", rows, name, error, exc_info=error)
            else:
                metrics.LOG_ROWS_WRITTEN.labels(name).inc(rows)

    def _store(self, config: Any) -> Any:
        """A FeatureStore on the serving configuration, for ``write_logged_features``."""
        store = self._stores.get(id(config))
        if store is None:
            from feast import FeatureStore

            store = FeatureStore(repo_path=str(config.repo_path) if config.repo_path else None, config=config)
            self._stores[id(config)] = store
        return store


_default: Optional[ServingLogger] = None
_default_lock = threading.Lock()


def default_logger() -> ServingLogger:
    """The process's logger, made on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = ServingLogger()
    return _default


def configure(**options: Any) -> ServingLogger:
    """Replace the process's logger by one with ``options`` (``ServingLogger``'s), after writing
    what the current one holds."""
    global _default
    with _default_lock:
        if _default is not None:
            _default.flush()
        _default = ServingLogger(**options)
    return _default


def flush(timeout_s: float = 30.0) -> bool:
    """Write everything logged so far (tests, demos, shutdown); whether it finished in time."""
    return default_logger().flush(timeout_s) if _default is not None else True


def log_table(requests: Sequence[ServedRequest]) -> pa.Table:
    """The log rows of requests of one use case configuration: entity keys, the system columns, then
    the sequences. Columns are built once for all the requests (a few large Arrow calls, not a few
    per request): this runs beside the requests and competes with them for the interpreter."""
    first = requests[0]
    version = use_case_version(first.service)
    counts = [r.rows for r in requests]
    total = sum(counts)
    keys: Dict[str, ValueType] = {}
    for view in first.views:
        keys.update(view.join_keys)
    columns: Dict[str, pa.Array] = {}
    for key, value_type in keys.items():
        values: List[Any] = []
        for request in requests:
            values.extend(request.entity_columns[key])
        columns[key] = pa.array(column_values(key, value_type, _series(values)), ARROW_ELEMENT[value_type])
    asked: Dict[str, Tuple[ValueType, bool]] = {}
    for view in first.views:
        asked.update((column, (value_type, listed)) for column, value_type, listed in view.request_columns)
    for request_column, (value_type, listed) in asked.items():
        element = ARROW_ELEMENT[value_type]
        values = [v for request in requests for v in request.entity_columns[request_column]]
        columns[request_column] = pa.array(values, pa.list_(element) if listed else element)
    times = pa.array(np.repeat([r.request_us for r in requests], counts), pa.timestamp("us", tz="UTC"))
    columns[LOG_TIMESTAMP] = times
    columns[LOG_DATE] = times.cast(pa.date32())
    columns[REQUEST_ID] = pa.array(np.repeat([uuid.uuid4().hex for _ in requests], counts), pa.string())
    columns[USE_CASE_FIELD] = pa.array([first.service.name] * total, pa.string())
    columns[USE_CASE_VERSION_FIELD] = pa.array([version] * total, pa.string())
    for index, view in enumerate(first.views):
        served = [r.views[index] for r in requests]
        # Every request's unique entities back to back; each request row points at its own.
        owners, base = [], 0
        for one in served:
            owners.append(np.asarray(one.plan.owner(), dtype=np.int64) + base)
            base += one.batch.rows
        rows = pa.array(np.concatenate(owners) if owners else np.empty(0, np.int64))
        lengths = np.concatenate([one.batch.lengths for one in served])
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        offset_array = pa.array(offsets, pa.int64())
        for name in view.outputs:
            value_type = view.batch.types[name]
            column = np.concatenate([one.batch.columns[name] for one in served])
            if value_type == ValueType.UNIX_TIMESTAMP:
                flat: pa.Array = pa.array(column.astype(np.int64) * 1_000_000, pa.timestamp("us", tz="UTC"))
                list_type = TIMESTAMP_LIST
            else:
                flat = pa.array(column, ARROW_ELEMENT[value_type])
                list_type = pa.list_(ARROW_ELEMENT[value_type])
            per_entity = pa.LargeListArray.from_arrays(offset_array, flat)
            columns[logged_column(view.name, name)] = per_entity.take(rows).cast(list_type)
    return pa.table(columns)


def _series(values: Sequence[Any]) -> pd.Series:
    return pd.Series(list(values))
