"""The plain read's response (Feast's path): one sequence view's replies into Feast's
``GetOnlineFeaturesResponse``, each feature's lists built from whole columns.

Each entity's value of a feature is written as its wire bytes (``response_values``), merged into
the response at once. The entities still to build are read together (``storage/sequence_columns.fields_of``):
numeric features as typed arrays written with numpy, string and bytes features as their values'
list elements joined per entity; small columns (fewer than ``BULK_FROM`` values) value by value.
An entity served from one whole block (the usual one after compaction) keeps its bytes with that
block (``ColumnBlock.keep``), so reading it again costs a lookup per feature, until its next push.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.value_type import ValueType

from feast_sequence.serving.response_values import (
    BULK_FROM,
    NULL_ENTRY,
    entries_by_value,
    list_value_entries,
    merge_entries,
    text_list_entries,
)
from feast_sequence.storage.compaction import Served
from feast_sequence.storage.read import SequenceRead, add_view_metadata, members
from feast_sequence.storage.redis_io import Command
from feast_sequence.storage.sequence_columns import (
    TIMESTAMPS,
    field_tag,
    fields_of,
    one_block,
    source_index,
    value_type_of,
)

_TEXT = (ValueType.STRING, ValueType.BYTES)
_ENTRY = "feast_entry"  # the keys of the bytes kept with a block: (this, field tag, value type)
_NEWEST = "feast_newest"  # (this,): the block's newest event time (whole seconds)


def populate_sequences(
    read: SequenceRead,
    table: Any,
    indexes: Sequence[List[int]],
    output_len: int,
    commands: Sequence[Command],
    replies: Sequence[Any],
    response: Any,
    full_feature_names: bool,
    include_version_metadata: bool,
) -> None:
    """Append one view's sequences to a ``GetOnlineFeaturesResponse``, as Feast's
    ``_populate_response_from_feature_data`` does (``indexes``: the request rows of each unique
    entity). A corrupt entity (storage/read.members) is answered as Feast answers a missing one:
    null, NOT_FOUND."""
    name = table.projection.name_to_use()
    response.metadata.feature_names.val.extend(
        f"{name}__{f}" if full_feature_names else f for f in read.requested_names
    )
    add_view_metadata(response, table, include_version_metadata)
    sequences = members(read.settings, commands, replies)
    entries = _entries_of(read, sequences)
    newest = [int.from_bytes(b, "little", signed=True) for b in entries.pop()]
    owner = [0] * output_len
    for unique, destinations in enumerate(indexes):
        for out in destinations:
            owner[out] = unique
    corrupt = [u for u, s in enumerate(sequences) if s.corrupt]  # served with no events
    statuses = [FieldStatus.PRESENT] * output_len
    if corrupt:
        lost = set(corrupt)
        statuses = [FieldStatus.NOT_FOUND if owner[out] in lost else FieldStatus.PRESENT for out in range(output_len)]
    timestamps = None  # the same for every feature of the view: built once, then copied
    for column in entries:
        vector = response.results.add()
        vector.statuses.extend(statuses)
        for unique in corrupt:  # null, as Feast answers a missing entity
            column[unique] = NULL_ENTRY
        merge_entries(vector, column, owner)
        if timestamps is None:
            for out in range(output_len):
                vector.event_timestamps.add(seconds=newest[owner[out]])
            timestamps = vector.event_timestamps
        else:
            vector.event_timestamps.MergeFrom(timestamps)


def _entries_of(read: SequenceRead, sequences: Sequence[Served]) -> List[List[Any]]:
    """Per feature of ``read.plan``, each sequence's value bytes (bytes or a uint8 array), kept
    with its block or built; last, each sequence's newest event time (8 bytes, little-endian)."""
    layout = read.layout
    fields = [source_index(source) for _, _, source in read.plan]
    types = [ValueType.UNIX_TIMESTAMP if i == TIMESTAMPS else value_type_of(layout, i) for i in fields]
    keys = [(_ENTRY, field_tag(layout, i), t.value) for i, t in zip(fields, types)] + [(_NEWEST,)]
    # Per feature and entity, its value's bytes; the last row, each entity's newest event time.
    entries: List[List[Any]] = [[None] * len(sequences) for _ in keys]
    blocks = [one_block(s) for s in sequences]
    missing = []
    for unique, block in enumerate(blocks):
        kept = [block.kept(key) for key in keys] if block is not None else []
        found = [k for k in kept if k is not None]  # uint8 arrays: bytes.join takes them as they are
        if len(found) < len(keys):
            missing.append(unique)
            continue
        for column, value in zip(entries, found):
            column[unique] = value
    if missing:
        built = _build(read, [sequences[u] for u in missing], fields, types)
        for column, values in zip(entries, built):
            for unique, built_value in zip(missing, values):
                column[unique] = built_value
        for unique in missing:
            block = blocks[unique]
            if block is not None:
                for key, column in zip(keys, entries):
                    block.keep(key, np.frombuffer(column[unique], dtype=np.uint8))
    return entries


def _build(
    read: SequenceRead, sequences: Sequence[Any], fields: List[int], types: List[ValueType]
) -> List[List[bytes]]:
    """Per feature of ``read.plan``, each sequence's value bytes, from its whole columns; last, each
    sequence's newest event time (8 bytes, little-endian; 0 without events)."""
    layout = read.layout
    texts = [i for i, t in zip(fields, types) if t in _TEXT]
    indexes = list(dict.fromkeys([TIMESTAMPS, *fields]))
    columns = dict(zip(indexes, fields_of(layout, sequences, indexes, elements=texts)))
    lengths = np.fromiter((s.count for s in sequences), dtype=np.int64, count=len(sequences))
    starts = np.concatenate(([0], np.cumsum(lengths)))
    out = [
        _entries(columns[i], lengths, starts, t, list_field)
        for i, t, (_, list_field, _) in zip(fields, types, read.plan)
    ]
    newest = np.zeros(len(sequences), dtype="<i8")
    non_empty = lengths > 0
    newest[non_empty] = columns[TIMESTAMPS][starts[:-1][non_empty]]
    out.append([seconds.tobytes() for seconds in newest])
    return out


def _entries(
    values: np.ndarray, lengths: np.ndarray, starts: np.ndarray, value_type: ValueType, list_field: str
) -> List[bytes]:
    """Each sequence's value entry of one feature from its whole column."""
    if value_type in _TEXT:
        return text_list_entries(values, lengths, value_type)
    # Feast's sentinel stays in a packed list here: the store re-encodes the whole response's null
    # timestamps afterwards (online/null_timestamps.py), as for every plain read.
    entries: Optional[List[bytes]] = list_value_entries(values, lengths, value_type, False, BULK_FROM)
    if entries is None:  # too few values for numpy to pay
        flat, bounds = values.tolist(), starts.tolist()
        entries = entries_by_value([flat[a:b] for a, b in zip(bounds, bounds[1:])], list_field)
    return entries
