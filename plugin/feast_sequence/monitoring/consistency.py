"""Online/offline consistency: each logged response against the offline engine's answer for the same
entity at the same request time, with each difference put down to its cause.

For every logged row of a use case (in a time range), the offline point-in-time engine recomputes
each sequence view as the use case shapes it (``get_training_data``'s path, as lists) at the logged
request time. Each pair of sequences is compared on event identities: an event's identity is its
timestamp and the served fields that are not enrichments; enriched fields are compared on the events
both sides have. Per row and view:

- ``exact_match``: every served field equal, in order;
- ``length_diff``: online length minus offline length;
- ``edit_distance`` = ``deletes`` + ``inserts``: the fewest deletions of online events and
  insertions of offline ones that turn the online sequence into the offline one (no substitutions);
- ``online_only`` = ``online_only_unbatched`` + ``online_only_ahead`` + ``online_only_displaced``:
  events served that the offline answer lacks, because the batch source lacks them (lost from the
  batch, or the batch is late), because their time is after the request's (the offline engine reads
  nothing after it), or because they are older than every offline event while the offline answer
  is full (the use case's length): events the online side lacks took their place;
- ``offline_only`` = ``offline_only_lost`` + ``offline_only_late`` + ``offline_only_displaced``:
  events the offline answer has that were not served, because they were never pushed or were lost
  (not in the online store now either), because they were pushed after the request (in the online
  store now), or because the served sequence was full of newer events the batch lacks;
- ``enrichment_mismatches``: events both have whose enriched fields differ (a stale enrichment);
- ``online_lag_s``: request time minus the oldest late event's time: how late the pushes were, at
  least, measured only on events both sides have (offline, and online since).

Rows logged by another configuration of the use case (its version differs from the registry's) are
counted as configuration changes, not compared: they are not skew. So are a view's rows logged before
its served window (``max_length``, TTL) last changed, when the store recorded it: training data
replays the current definition at every time, so those rows legitimately differ (docs/concepts.md,
"Definition changes").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Collection, Dict, Hashable, List, Sequence, Set, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
from feast import FeatureService, FeatureStore

from feast_sequence.definitions.use_case import OutputFormat, use_case_settings
from feast_sequence.errors import SequenceInputError
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
    "online_only_unbatched",
    "online_only_ahead",
    "online_only_displaced",
    "offline_only",
    "offline_only_lost",
    "offline_only_late",
    "offline_only_displaced",
    "enrichment_mismatches",
    "online_lag_s",
)
Identity = Tuple[Any, ...]


@dataclass(frozen=True)
class SequencePair:
    """One view's sequence of one logged row: events as identities and enriched values, newest first."""

    identities: List[Identity]
    enriched: List[Tuple[Any, ...]]
    times_s: List[float]  # each event's time, seconds since the epoch


def not_served(online: SequencePair, offline: SequencePair, length: int) -> List[Identity]:
    """The offline answer's events that were not served and not displaced: pushed late, or lost;
    which of the two only the online store's current contents can tell (``compare``'s ``online_now``)."""
    return [offline.identities[i] for i in _exclusive(offline, online, length)[1]]


def compare(
    online: SequencePair,
    offline: SequencePair,
    request_s: float,
    length: int,
    online_now: Collection[Identity] = (),
) -> Dict[str, Any]:
    """The per-row measures of the module docstring for one pair of sequences, cut to ``length``
    events (the use case's length) each; ``online_now``: the identities the online store holds now,
    of the events ``not_served`` gives."""
    common = _lcs_pairs(online.identities, offline.identities)
    deletes = len(online.identities) - len(common)
    inserts = len(offline.identities) - len(common)
    mismatched = sum(1 for i, j in common if online.enriched[i] != offline.enriched[j])
    online_displaced, online_rest = _exclusive(online, offline, length)
    ahead = [i for i in online_rest if online.times_s[i] > request_s]
    offline_displaced, offline_rest = _exclusive(offline, online, length)
    late = [j for j in offline_rest if offline.identities[j] in online_now]
    return {
        "exact_match": deletes == 0 and inserts == 0 and mismatched == 0,
        "online_length": len(online.identities),
        "offline_length": len(offline.identities),
        "length_diff": len(online.identities) - len(offline.identities),
        "edit_distance": deletes + inserts,
        "inserts": inserts,
        "deletes": deletes,
        "online_only": len(online_displaced) + len(online_rest),
        "online_only_unbatched": len(online_rest) - len(ahead),
        "online_only_ahead": len(ahead),
        "online_only_displaced": len(online_displaced),
        "offline_only": len(offline_displaced) + len(offline_rest),
        "offline_only_lost": len(offline_rest) - len(late),
        "offline_only_late": len(late),
        "offline_only_displaced": len(offline_displaced),
        "enrichment_mismatches": mismatched,
        "online_lag_s": request_s - min(offline.times_s[j] for j in late) if late else np.nan,
    }


def _exclusive(side: SequencePair, other: SequencePair, length: int) -> Tuple[List[int], List[int]]:
    """Positions of ``side``'s events that ``other`` lacks (as many times as they are missing), split
    into those displaced from ``other`` (it is full, of ``length`` events, all newer or as new) and
    the rest."""
    missing = Counter(side.identities) - Counter(other.identities)
    full = len(other.identities) >= length
    oldest = min(other.times_s, default=np.inf)
    displaced: List[int] = []
    rest: List[int] = []
    for position, identity in enumerate(side.identities):
        if missing[identity] > 0:
            missing[identity] -= 1
            (displaced if full and side.times_s[position] <= oldest else rest).append(position)
    return displaced, rest


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


def check_use_case(store: FeatureStore, service: FeatureService, logs: pa.Table) -> UseCaseCheck:
    """Compare a use case's logged rows with the offline engine's answers (module docstring)."""
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
            length = min(spec.length or settings.max_length, settings.max_length)
            # Rows served under the view's previous window were counted above as configuration changes.
            compared = [(position, row) for position, row in enumerate(rows) if seconds[row] >= since_s]
            pairs = [
                (
                    _pair(online_columns, identity, enriched, row, settings.timestamp_field),
                    _pair(offline_columns, identity, enriched, position, settings.timestamp_field),
                )
                for position, row in compared
            ]
            unserved = [bool(not_served(on, off, length)) for on, off in pairs]
            keys = [k for k, _ in settings.join_keys]
            asked_rows = [row for (_, row), asked in zip(compared, unserved) if asked]
            entities = [{k: logs.column(k)[row].as_py() for k in keys} for row in asked_rows]
            now = iter(online_now(store, name, identity, settings.timestamp_field, entities))
            for (_, row), (on, off), asked in zip(compared, pairs, unserved):
                held = next(now) if asked else set()
                results.append(
                    {"use_case": service.name, "view": name, "log_row": row, "request_time": stamps[row]}
                    | {"configuration_changed": False}
                    | compare(on, off, seconds[row], length, held)
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


def online_now(
    store: FeatureStore, view: str, identity: List[str], timestamp_field: str, entities: List[Dict[str, Any]]
) -> List[Set[Identity]]:
    """The identities of the events the online store holds now for each entity (its last
    ``max_length`` events that have not expired), to tell a late push from a lost one."""
    if not entities:
        return []
    served = store.get_online_features(features=[f"{view}:{f}" for f in identity], entity_rows=entities).to_dict()
    columns = {f: _frame_rows(pd.Series(served[f], dtype=object)) for f in identity}
    return [set(_pair(columns, identity, [], row, timestamp_field).identities) for row in range(len(entities))]


def recompute(
    store: FeatureStore, service: FeatureService, views: ServedViews, logs: pa.Table, rows: Sequence[int]
) -> pd.DataFrame:
    """The offline engine's sequences for logged rows, as the use case shapes them (as lists, with
    the event timestamps), in the rows' order; columns are the log's."""
    keys: Dict[str, Any] = {}
    for _, settings, _, _ in views:
        keys.update(settings.join_keys)
    entity_df = pd.DataFrame({k: logs.column(k).to_pylist() for k in keys})
    for _, _, spec, _ in views:  # each row's candidate, as served (serving_log.request_columns)
        for condition in spec.request_conditions:
            column = str(condition.from_request)
            if column not in logs.column_names:
                raise SequenceInputError(
                    f"The logs of use case '{service.name}' have no request column {column!r} that a filter "
                    "of the use case reads: they were written by another configuration."
                )
            entity_df[column] = logs.column(column).to_pylist()
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
