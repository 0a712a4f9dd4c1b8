"""A served sequence's fields as typed numpy columns, read from a format 5 block's columns without
building per-event protobuf, and from one protobuf parse for the rest (a tail, a row block).

``field_values`` is the one function a reader needs: the values of one field (or the timestamps) of
one served sequence, newest first, with the field's null default where an event lacks the field
(an event stored before the field was added); ``field_columns`` gives them for each sequence of a
request, the field's tag and type found once.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
from feast.value_type import ValueType

from feast_sequence.definitions.element_types import ELEMENT_TYPES, WIRE_VARINT
from feast_sequence.storage import block_columns as bc
from feast_sequence.storage.blocks import Block, ColumnBlock, shareable
from feast_sequence.storage.codec import TIMESTAMP_NUMBER, EventLayout, column_per_event
from feast_sequence.storage.compaction import Served

TIMESTAMPS = -1  # ``field_values``' index of the event timestamps (whole seconds)
_ZIGZAG = (ValueType.INT32, ValueType.INT64, ValueType.UNIX_TIMESTAMP)  # stored as protobuf sint


def has_columns(sequence: Served) -> bool:
    """Whether part of the sequence comes from a format 5 block's columns."""
    return any(isinstance(part, tuple) and isinstance(part[0], ColumnBlock) for part in sequence.parts)


def field_values(layout: EventLayout, sequence: Served, index: int) -> np.ndarray:
    """Field ``index`` of ``layout.fields`` (``TIMESTAMPS``: the event times in whole seconds) of
    one served sequence, newest first: int64 for integers and timestamps (int32 for INT32), float32,
    float64, bool, or an object array of str or bytes."""
    value_type = ValueType.INT64 if index == TIMESTAMPS else layout.fields[index].value_type
    pieces = []
    for part in sequence.parts:
        if isinstance(part, tuple) and isinstance(part[0], ColumnBlock):
            pieces.append(_from_block(layout, part[0], part[1], index, value_type))
        elif isinstance(part, tuple):
            block, k = part
            pieces.append(_from_members(layout, block.packed(k), index, value_type, partial(_first_members, block, k)))
        elif part:
            pieces.append(_from_members(layout, b"".join(part), index, value_type, partial(list, part)))
    return _joined(pieces, value_type)


def fields_of(layout: EventLayout, sequences: Sequence[Served], indexes: Sequence[int]) -> List[np.ndarray]:
    """``field_values`` of every sequence back to back, one array per index of ``indexes``: format 5
    blocks' parts from their columns (decoded together), every other part (tails, row blocks) from
    one protobuf parse of all of them, so the work is per field, not per field and sequence."""
    decode_together(layout, sequences, [_source(index) for index in indexes])
    pieces: List[Tuple[Any, int, int]] = []  # (a column block, or None for parsed members, start, end)
    data: List[bytes] = []
    members: List[Callable[[], Sequence[bytes]]] = []
    parsed = 0
    for sequence in sequences:
        for part in sequence.parts:
            if isinstance(part, tuple) and isinstance(part[0], ColumnBlock):
                pieces.append((part[0], 0, part[1]))
                continue
            if isinstance(part, tuple):
                block, k = part
                data.append(block.packed(k))
                members.append(partial(_first_members, block, k))
            elif part:
                k = len(part)
                data.append(b"".join(part))
                members.append(partial(list, part))
            else:
                continue
            pieces.append((None, parsed, parsed + k))
            parsed += k
    everyone = partial(_all_members, members)
    parsed_message = layout.message_class.FromString(b"".join(data)) if data else None  # once, for every field
    out = []
    for index in indexes:
        value_type = ValueType.INT64 if index == TIMESTAMPS else layout.fields[index].value_type
        rest = None if parsed_message is None else _message_column(layout, parsed_message, index, value_type, everyone)
        out.append(_joined([_piece(layout, piece, index, value_type, rest) for piece in pieces], value_type))
    return out


def _piece(layout: EventLayout, piece: Tuple[Any, int, int], index: int, value_type: ValueType, rest: Any) -> Any:
    block, start, end = piece
    if block is None:
        return rest[start:end]
    return _from_block(layout, block, end, index, value_type)


def _joined(pieces: List[np.ndarray], value_type: ValueType) -> np.ndarray:
    if not pieces:
        return np.zeros(0, dtype=ELEMENT_TYPES[value_type].numpy_dtype)
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def field_columns(layout: EventLayout, sequences: Sequence[Served], index: int) -> List[np.ndarray]:
    """``field_values`` of each of ``sequences`` (one request's), with the field's tag and type found
    once: a sequence served from one columnar block alone (the usual one after compaction) is then a
    slice of that block's typed column, with no per-part work."""
    value_type = ValueType.INT64 if index == TIMESTAMPS else layout.fields[index].value_type
    tag = _tag(layout, index)
    key = (tag, value_type)
    out: List[np.ndarray] = []
    for sequence in sequences:
        parts = [part for part in sequence.parts if part]
        if len(parts) == 1 and isinstance(parts[0], tuple) and isinstance(parts[0][0], ColumnBlock):
            block, k = parts[0]
            whole = block.derived(key, partial(_whole_block, block, tag, value_type))
            out.append(whole if k >= block.count else whole[:k])
        else:
            out.append(field_values(layout, sequence, index))
    return out


def _all_members(members: Sequence[Callable[[], Sequence[bytes]]]) -> List[bytes]:
    return [member for listed in members for member in listed()]


def _source(index: int) -> str:
    return "ts" if index == TIMESTAMPS else f"f{index + 1}"


def _first_members(block: Block, k: int) -> List[bytes]:
    return block.events().members[:k]


def _from_members(
    layout: EventLayout, data: bytes, index: int, value_type: ValueType, members: Callable[[], Sequence[bytes]]
) -> np.ndarray:
    return _message_column(layout, layout.message_class.FromString(data), index, value_type, members)


def _message_column(
    layout: EventLayout, message: Any, index: int, value_type: ValueType, members: Callable[[], Sequence[bytes]]
) -> np.ndarray:
    """Field ``index`` of a parsed stored message as a typed array (see ``field_values``)."""
    source = _source(index)
    column: Any = getattr(message, source)
    if len(column) != len(message.ts):  # events stored before this field was added to the schema
        column = column_per_event(layout, members(), source)
    dtype = ELEMENT_TYPES[value_type].numpy_dtype
    if dtype is object:
        out = np.empty(len(column), dtype=object)
        out[:] = list(column)
        return out
    return np.array(column, dtype=dtype)


def decode_together(layout: EventLayout, sequences: Sequence[Served], sources: Sequence[str]) -> None:
    """Decode the fields ``sources`` (a stored message's names: ``ts``, ``f1``, ...) of every format 5 block of
    ``sequences`` (one request's) ahead of ``field_values``, a field's columns of all the blocks at
    once (``block_columns.columns_from``): a few numpy calls per field, not per field and block.
    Columns that do not decode so are left to be decoded (or refused) one by one when read."""
    column_blocks = {
        id(part[0]): part[0]
        for sequence in sequences
        for part in sequence.parts
        if isinstance(part, tuple) and isinstance(part[0], ColumnBlock)
    }
    if len(column_blocks) < 2:
        return
    for source in dict.fromkeys(sources):
        tag = _tag(layout, source_index(source))
        groups: Dict[int, List[Tuple[bc.LazyColumns, bc.StoredColumn]]] = {}
        for block in column_blocks.values():
            lazy = block.columns().columns
            if not isinstance(lazy, bc.LazyColumns):
                continue
            stored = lazy.pending(tag)
            if stored is not None:
                groups.setdefault(stored.encoding, []).append((lazy, stored))
        for group in groups.values():
            try:
                decoded = bc.columns_from([stored for _, stored in group])
            except (ValueError, IndexError):
                decoded = None
            for (lazy, _), column in zip(group, decoded or ()):
                lazy.provide(tag, shareable(column))


def source_index(source: str) -> int:
    """``field_values``' index of a stored message's field name (``ts``, ``f1``, ...)."""
    return TIMESTAMPS if source == "ts" else int(source[1:]) - 1


def _tag(layout: EventLayout, index: int) -> int:
    if index == TIMESTAMPS:
        return TIMESTAMP_NUMBER << 3 | WIRE_VARINT
    value_type = layout.fields[index].value_type
    return layout.numbers[index] << 3 | ELEMENT_TYPES[value_type].wire_type


def _from_block(layout: EventLayout, block: ColumnBlock, k: int, index: int, value_type: ValueType) -> np.ndarray:
    tag = _tag(layout, index)
    return block.derived((tag, value_type), partial(_whole_block, block, tag, value_type))[:k]


def _whole_block(block: ColumnBlock, tag: int, value_type: ValueType) -> np.ndarray:
    """One field of every event of a block, typed (the field's null default where an event lacks it)."""
    element = ELEMENT_TYPES[value_type]
    out = np.full(block.count, element.null_default, dtype=element.numpy_dtype)
    column = block.columns().columns.get(tag)
    if column is not None:
        out[column.events] = _typed(column, column.values, value_type)
    return out


def _typed(column: bc.Column, values: np.ndarray, value_type: ValueType) -> np.ndarray:
    if value_type in _ZIGZAG:
        return bc.unzigzag(values)
    if value_type == ValueType.BOOL:
        flags: np.ndarray = values != 0
        return flags
    if value_type == ValueType.FLOAT:
        return np.ascontiguousarray(values).view("<f4").reshape(-1)
    if value_type == ValueType.DOUBLE:
        return np.ascontiguousarray(values).view("<f8").reshape(-1)
    entries: List[Any] = column.texts() if value_type == ValueType.STRING else list(column.dictionary or [])
    distinct = np.empty(len(entries), dtype=object)
    distinct[:] = entries
    typed: np.ndarray = distinct[values.astype(np.int64)]
    return typed
