"""Point-in-time sequences for one entity: what the online store would have served at each time T.

Pure logic shared by every offline engine (pandas for Feast's file store, Spark's cogroup for the
Spark store), so training data and serving follow one definition (docs/concepts.md).

For one entity, events and queries are merged in time order (a sort/merge, no range join) and the
Redis append algorithm is replayed in memory: a sorted list of at most ``max_length`` kept events
and their identities. At each query time T, after every event with timestamp <= T, the kept events
with timestamp >= T - ttl are the answer, newest first. Memory is O(max_length) state plus the
entity's own rows, whatever the number of events, and each event costs O(log max_length) (a
``SortedList``, not a Python list whose inserts and deletes move every element: at max_length
100,000 that was the whole cost). Results are built as Arrow list arrays (offsets plus one
``take``), not as Python lists.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import pyarrow as pa
from sortedcontainers import SortedList

from feast_sequence.definitions.columns import EVENT_TIME_US, QUERY_TIME_US, ROW_ID
from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.storage.codec import encode_columns, layout_for
from feast_sequence.storage.conversion import ARROW_ELEMENT, column_values


def output_schema(settings: SequenceSettings, features: Sequence[str]) -> pa.Schema:
    """``ROW_ID`` and one list per requested feature (timestamps as whole seconds)."""
    types = {f.name: ARROW_ELEMENT[f.value_type] for f in settings.fields}
    types[settings.timestamp_field] = pa.int64()
    types[EVENT_TIME_US] = pa.int64()  # exact event times, for a use case's time window
    return pa.schema([(ROW_ID, pa.int64())] + [(name, pa.list_(types[name])) for name in features])


def sequences_as_of(
    settings: SequenceSettings,
    features: Sequence[str],
    events: pa.Table,
    queries: pa.Table,
) -> pa.Table:
    """One row per query of one entity: ``ROW_ID`` and one list per requested feature.

    ``events`` holds the event fields and ``EVENT_TIME_US``; ``queries`` holds ``ROW_ID`` and
    ``QUERY_TIME_US``. ``features`` are event field names or the view's timestamp field. Values are
    as stored (nulls as defaults, timestamps as whole seconds); see ``_historical.as_served``.
    """
    schema = output_schema(settings, features)
    if queries.num_rows == 0:
        return schema.empty_table()
    layout = layout_for(settings)
    columns = [column_values(f.name, f.value_type, events.column(f.name)) for f in settings.fields]
    event_times: List[int] = events.column(EVENT_TIME_US).to_pylist()
    members, identities = encode_columns(layout, columns, event_times)
    keys = identities if identities is not None else members

    ttl_us = settings.ttl_us
    # Kept events as (timestamp, member, event index, identity), ascending: the Redis sorted set.
    kept: SortedList = SortedList()
    kept_by_identity: Dict[bytes, Tuple[int, bytes, int, bytes]] = {}
    event_order = sorted(range(len(event_times)), key=event_times.__getitem__)
    query_times: List[int] = queries.column(QUERY_TIME_US).to_pylist()
    row_ids: List[int] = queries.column(ROW_ID).to_pylist()
    out_rows: List[int] = []
    offsets: List[int] = [0]
    served: List[int] = []  # event indices of every answer, concatenated
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
                kept.remove(old)
            kept.add(entry)
            kept_by_identity[keys[i]] = entry
            if len(kept) > settings.max_length:
                del kept_by_identity[kept.pop(0)[3]]
        start = kept.bisect_left((t - ttl_us,)) if ttl_us is not None else 0
        served.extend(entry[2] for entry in kept.islice(start, reverse=True))
        offsets.append(len(served))
        out_rows.append(row_ids[q])

    take = pa.array(served, pa.int64())
    list_offsets = pa.array(offsets, pa.int32())
    by_field = {f.name: (column, ARROW_ELEMENT[f.value_type]) for f, column in zip(settings.fields, columns)}
    by_field[settings.timestamp_field] = ([t // 1_000_000 for t in event_times], pa.int64())
    by_field[EVENT_TIME_US] = (event_times, pa.int64())
    arrays = [pa.array(out_rows, pa.int64())]
    for name in features:
        values, arrow_type = by_field[name]
        arrays.append(pa.ListArray.from_arrays(list_offsets, pa.array(values, arrow_type).take(take)))
    return pa.Table.from_arrays(arrays, schema=schema)
