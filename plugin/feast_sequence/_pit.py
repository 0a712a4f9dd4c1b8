"""Point-in-time sequences for one entity: what the online store would have served at each time T.

Pure logic shared by every offline engine (pandas for Feast's file store, Spark's cogroup for the
Spark store), so training data and serving follow one definition (docs/concepts.md).

For one entity, events and queries are merged in time order (a sort/merge, no range join) and the
Redis append algorithm is replayed in memory: a sorted list of at most ``max_length`` kept events
and their identities. At each query time T, after every event with timestamp <= T, the kept events
with timestamp >= T - ttl are the answer, newest first. Memory is O(max_length) state plus the
entity's own rows, whatever the number of events.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any, Dict, List, Sequence, Tuple

import pandas as pd

from feast_sequence._codec import column_values, encode_columns, layout_for
from feast_sequence._settings import SequenceSettings

#: Internal column names of the offline engines (entity keys and fields use their own names).
EVENT_TIME_US = "__fsq_event_us"
QUERY_TIME_US = "__fsq_query_us"
ROW_ID = "__fsq_row"


def sequences_as_of(
    settings: SequenceSettings,
    features: Sequence[str],
    events: pd.DataFrame,
    queries: pd.DataFrame,
) -> pd.DataFrame:
    """One row per query of one entity: ``ROW_ID`` and one list per requested feature.

    ``events`` holds the event fields and ``EVENT_TIME_US``; ``queries`` holds ``ROW_ID`` and
    ``QUERY_TIME_US``. ``features`` are event field names or the view's timestamp field. Values are
    as stored (nulls as defaults, timestamps as whole seconds); see ``_historical.as_served``.
    """
    if queries.empty:  # an entity with events but no query: typed empty columns for Arrow
        return pd.DataFrame(
            {ROW_ID: pd.Series([], dtype="int64"), **{f: pd.Series([], dtype=object) for f in features}}
        )
    layout = layout_for(settings)
    columns = [column_values(f.name, f.value_type, events[f.name]) for f in settings.fields]
    event_times: List[int] = events[EVENT_TIME_US].astype("int64").tolist()
    members, identities = encode_columns(layout, columns, event_times)
    keys = identities if identities is not None else members

    by_field = {f.name: column for f, column in zip(settings.fields, columns)}
    seconds = [t // 1_000_000 for t in event_times]
    # The timestamp field is served in whole seconds, as Feast's UnixTimestamp carries online.
    sources = [by_field[name] if name in by_field else seconds for name in features]

    ttl_us = settings.ttl_seconds * 1_000_000 if settings.ttl_seconds else None
    # Kept events as (timestamp, member, event index, identity), ascending: the Redis sorted set.
    kept: List[Tuple[int, bytes, int, bytes]] = []
    kept_by_identity: Dict[bytes, Tuple[int, bytes, int, bytes]] = {}
    event_order = sorted(range(len(event_times)), key=event_times.__getitem__)
    query_times = queries[QUERY_TIME_US].astype("int64").tolist()
    row_ids = queries[ROW_ID].tolist()
    out_rows: List[Any] = []
    out_lists: List[List[List[Any]]] = [[] for _ in features]
    next_event = 0
    for q in sorted(range(len(query_times)), key=query_times.__getitem__):
        t = query_times[q]
        while next_event < len(event_order) and event_times[event_order[next_event]] <= t:
            i = event_order[next_event]
            next_event += 1
            entry = (event_times[i], members[i], i, keys[i])
            old = kept_by_identity.get(keys[i])
            if old is not None:
                if entry[:2] <= old[:2]:
                    continue
                del kept[bisect_left(kept, old)]
            insort(kept, entry)
            kept_by_identity[keys[i]] = entry
            if len(kept) > settings.max_length:
                del kept_by_identity[kept.pop(0)[3]]
        start = bisect_left(kept, (t - ttl_us,)) if ttl_us is not None else 0
        served = [entry[2] for entry in reversed(kept[start:])]
        out_rows.append(row_ids[q])
        for lists, source in zip(out_lists, sources):
            lists.append([source[i] for i in served])
    result = {ROW_ID: out_rows}
    result.update({name: lists for name, lists in zip(features, out_lists)})
    return pd.DataFrame(result)

