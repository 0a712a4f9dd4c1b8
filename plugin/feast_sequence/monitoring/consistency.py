"""Online/offline consistency: each logged response against the offline engine's answer for the same
entity at the same request time.

For every logged row of a use case (in a time range), the offline point-in-time engine recomputes
each sequence view as the use case shapes it (``get_training_data``'s path, as lists) at the logged
request time. Each pair of sequences is compared on event identities: an event's identity is its
timestamp and the served fields that are not enrichments; enriched fields are compared on the events
both sides have. Per row and view:

- ``exact_match``: every served field equal, in order;
- ``length_diff``: online length minus offline length;
- ``edit_distance`` = ``deletes`` + ``inserts``: the fewest deletions of online events and
  insertions of offline ones that turn the online sequence into the offline one (no substitutions);
- ``online_only`` / ``offline_only``: events (identities) one side has and the other lacks;
- ``enrichment_mismatches``: events both have whose enriched fields differ (a stale enrichment);
- ``online_lag_s``: request time minus the oldest event offline had that online lacked (how far
  behind the real-time path was, at least); ``offline_lag_s``: check time minus the oldest event
  online had that the batch source lacks (how late the batch data is, at least).

Rows logged by another configuration of the use case (its version differs from the registry's) are
counted as configuration changes, not compared: they are not skew. So are a view's rows logged before
its served window (``max_length``, TTL) last changed, when the store recorded it: training data
replays the current definition at every time, so those rows legitimately differ (docs/concepts.md,
"Definition changes").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
from feast import FeatureService, FeatureStore

from feast_sequence.definitions.use_case import OutputFormat, use_case_settings
from feast_sequence.feast_internals import historical_request
from feast_sequence.monitoring.training_from_logs import ServedViews, served_views
from feast_sequence.online.provider import sequence_provider
from feast_sequence.online.store import SequenceRedisOnlineStore
from feast_sequence.serving.serving_log import (
    LOG_TIMESTAMP,
    USE_CASE_VERSION_FIELD,
    logged_column,
    use_case_version,
)

LOG_ROW = "__fsq_log_row"
QUERY_TIME = "event_timestamp"

#: Columns of the per-row results (one row per logged row and sequence view).
ROW_COLUMNS = (
    "use_case",
    "view",
    "log_row",
    "request_time",
    "configuration_changed",
    "exact_match",
    "online_length",
    "offline_length",
    "length_diff",
    "edit_distance",
    "inserts",
    "deletes",
    "online_only",
    "offline_only",
    "enrichment_mismatches",
    "online_lag_s",
    "offline_lag_s",
)


@dataclass(frozen=True)
class SequencePair:
    """One view's sequence of one logged row: events as identities and enriched values, newest first."""

    identities: List[Tuple[Any, ...]]
    enriched: List[Tuple[Any, ...]]
    times_s: List[float]  # each event's time, seconds since the epoch


def compare(online: SequencePair, offline: SequencePair, request_s: float, checked_s: float) -> Dict[str, Any]:
    """The per-row measures of the module docstring for one pair of sequences."""
    common = _lcs_pairs(online.identities, offline.identities)
    deletes = len(online.identities) - len(common)
    inserts = len(offline.identities) - len(common)
    online_count, offline_count = Counter(online.identities), Counter(offline.identities)
    online_only_ids = online_count - offline_count
    offline_only_ids = offline_count - online_count
    mismatched = sum(1 for i, j in common if online.enriched[i] != offline.enriched[j])
    exact = deletes == 0 and inserts == 0 and mismatched == 0
    offline_missing = [t for ident, t in zip(online.identities, online.times_s) if ident in online_only_ids]
    online_missing = [t for ident, t in zip(offline.identities, offline.times_s) if ident in offline_only_ids]
    return {
        "exact_match": exact,
        "online_length": len(online.identities),
        "offline_length": len(offline.identities),
        "length_diff": len(online.identities) - len(offline.identities),
        "edit_distance": deletes + inserts,
        "inserts": inserts,
        "deletes": deletes,
        "online_only": sum(online_only_ids.values()),
        "offline_only": sum(offline_only_ids.values()),
        "enrichment_mismatches": mismatched,
        "online_lag_s": request_s - min(online_missing) if online_missing else np.nan,
        "offline_lag_s": checked_s - min(offline_missing) if offline_missing else np.nan,
    }


def _lcs_pairs(a: Sequence[Hashable], b: Sequence[Hashable]) -> List[Tuple[int, int]]:
    """Index pairs of a longest common subsequence of ``a`` and ``b`` (common ends first: the usual
    case of equal or nearly equal sequences costs no table)."""
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    pairs = [(i, i) for i in range(start)]
    mid_a, mid_b = a[start:end_a], b[start:end_b]
    if mid_a and mid_b:
        table = np.zeros((len(mid_a) + 1, len(mid_b) + 1), dtype=np.int32)
        for i in range(len(mid_a) - 1, -1, -1):
            for j in range(len(mid_b) - 1, -1, -1):
                if mid_a[i] == mid_b[j]:
                    table[i, j] = table[i + 1, j + 1] + 1
                else:
                    table[i, j] = max(table[i + 1, j], table[i, j + 1])
        i = j = 0
        while i < len(mid_a) and j < len(mid_b):
            if mid_a[i] == mid_b[j]:
                pairs.append((start + i, start + j))
                i += 1
                j += 1
            elif table[i + 1, j] >= table[i, j + 1]:
                i += 1
            else:
                j += 1
    pairs.extend((end_a + k, end_b + k) for k in range(len(a) - end_a))
    return pairs


@dataclass(frozen=True)
class UseCaseCheck:
    """The per-row results of one use case, and what its logs were written by."""

    name: str
    version: str
    rows: pd.DataFrame  # ROW_COLUMNS
    logged_versions: Dict[str, int]  # rows per logged version


def check_use_case(
    store: FeatureStore,
    service: FeatureService,
    logs: pa.Table,
    checked_at: Optional[datetime] = None,
) -> UseCaseCheck:
    """Compare a use case's logged rows with the offline engine's answers (module docstring)."""
    checked_s = (checked_at or datetime.now(timezone.utc)).timestamp()
    views = served_views(store, service)
    version = use_case_version(service)
    versions = logs.column(USE_CASE_VERSION_FIELD).to_pylist() if logs.num_rows else []
    times = pd.to_datetime(logs.column(LOG_TIMESTAMP).to_pandas(), utc=True) if logs.num_rows else pd.Series([])
    current = [v == version for v in versions]
    results: List[Dict[str, Any]] = []
    stamps = list(times)  # per-row access to a Series is slow
    seconds = [t.timestamp() for t in stamps]
    windows = window_changes(store)
    for name, _, _, _ in views:
        since_s = windows.get(name, -np.inf)
        for row, (same, time) in enumerate(zip(current, stamps)):
            if not same or seconds[row] < since_s:
                results.append(
                    {"use_case": service.name, "view": name, "log_row": row, "request_time": time}
                    | {"configuration_changed": True}
                )
    rows = [r for r, same in enumerate(current) if same]
    if rows:
        offline = recompute(store, service, views, logs.take(pa.array(rows, pa.int64())), rows)
        for name, settings, spec, outputs in views:
            since_s = windows.get(name, -np.inf)
            enriched = [o for e in spec.enrich for o in e.output_names]
            identity = [settings.timestamp_field] + [o for o in outputs if o not in enriched]
            identity = list(dict.fromkeys(identity))
            online_columns = {f: _arrow_rows(logs.column(logged_column(name, f))) for f in identity + enriched}
            offline_columns = {f: _frame_rows(offline[logged_column(name, f)]) for f in identity + enriched}
            for position, row in enumerate(rows):
                request_s = seconds[row]
                if request_s < since_s:
                    continue  # served under the view's previous window: counted above
                measures = compare(
                    _pair(online_columns, identity, enriched, row, settings.timestamp_field),
                    _pair(offline_columns, identity, enriched, position, settings.timestamp_field),
                    request_s,
                    checked_s,
                )
                results.append(
                    {"use_case": service.name, "view": name, "log_row": row, "request_time": stamps[row]}
                    | {"configuration_changed": False}
                    | measures
                )
    frame = pd.DataFrame(results, columns=list(ROW_COLUMNS))
    frame["configuration_changed"] = frame["configuration_changed"].astype(bool)
    return UseCaseCheck(service.name, version, frame, dict(Counter(versions)))


def window_changes(store: FeatureStore) -> Dict[str, float]:
    """Per sequence view, when its current served window took effect (epoch seconds), as `feast
    apply` recorded it next to the stored events."""
    online = sequence_provider(store).online_store
    if not isinstance(online, SequenceRedisOnlineStore):
        return {}  # another online store keeps no record: nothing to tell apart
    recorded = online.stored_definitions(store.config)
    return {name: d.window_since_us / 1e6 for name, d in recorded.items() if d.window_since_us is not None}


def recompute(
    store: FeatureStore, service: FeatureService, views: ServedViews, logs: pa.Table, rows: Sequence[int]
) -> pd.DataFrame:
    """The offline engine's sequences for logged rows, as the use case shapes them (as lists, with
    the event timestamps), in the rows' order; columns are the log's."""
    keys: Dict[str, Any] = {}
    for _, settings, _, _ in views:
        keys.update(settings.join_keys)
    entity_df = pd.DataFrame({k: logs.column(k).to_pylist() for k in keys})
    entity_df[QUERY_TIME] = pd.to_datetime(logs.column(LOG_TIMESTAMP).to_pandas(), utc=True)
    entity_df[LOG_ROW] = list(range(len(rows)))
    request = historical_request(store.registry, store.project, service)
    refs = list(request.feature_refs)
    for name, settings, _, _ in views:
        ref = f"{name}:{settings.timestamp_field}"
        if ref not in refs:
            refs.append(ref)
    as_lists = replace(use_case_settings(service), output=OutputFormat.LISTS)
    job = sequence_provider(store).get_historical_features(
        store.config,
        request.feature_views,
        refs,
        entity_df,
        store.registry,
        store.project,
        True,
        use_case=as_lists,
    )
    frame: pd.DataFrame = job.to_df().sort_values(LOG_ROW, kind="stable").reset_index(drop=True)
    return frame


def _pair(
    columns: Dict[str, List[List[Any]]], identity: List[str], enriched: List[str], row: int, timestamp_field: str
) -> SequencePair:
    ids = list(zip(*(columns[f][row] for f in identity)))
    values = list(zip(*(columns[f][row] for f in enriched))) if enriched else [()] * len(ids)
    times = [t / 1e6 for t in columns[timestamp_field][row]]
    return SequencePair(ids, values, times)


def _arrow_rows(column: Any) -> List[List[Any]]:
    """A logged list column as Python lists per row; timestamps as integer microseconds."""
    value_type = column.type.value_type
    if pa.types.is_timestamp(value_type):
        column = column.cast(pa.list_(pa.timestamp("us", tz="UTC"))).cast(pa.list_(pa.int64()))
    return [v if v is not None else [] for v in column.to_pylist()]


def _frame_rows(series: pd.Series) -> List[List[Any]]:
    """A retrieved list column (numpy arrays per row, as ``to_df`` gives them) as Python lists per
    row; timestamps as integer microseconds, like ``_arrow_rows``."""
    rows: List[List[Any]] = []
    for value in series.tolist():
        if value is None:
            rows.append([])
        elif isinstance(value, np.ndarray) and value.dtype.kind == "M":
            rows.append(value.astype("datetime64[us]").astype(np.int64).tolist())
        elif isinstance(value, np.ndarray):
            rows.append(value.tolist())
        else:
            rows.append([_microseconds(v) if isinstance(v, (datetime, pd.Timestamp)) else v for v in value])
    return rows


def _microseconds(value: Any) -> int:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value // 1000)
