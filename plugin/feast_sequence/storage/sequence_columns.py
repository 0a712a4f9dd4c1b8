"""A served sequence's fields as typed numpy columns, read from a format 5 block's columns without
building per-event protobuf, and from one protobuf parse for the rest (a tail, a row block).

``fields_of`` is the one reader: the values of some fields (or the timestamps) of a request's
sequences back to back, newest first within each, with a field's null default where an event lacks
the field (an event stored before the field was added). The use case path takes its columns as they
are; the plain read takes string and bytes fields as ``list_elements`` (Feast's wire format of a
list's values, built once per block) and the rest as values. ``field_values`` is one sequence's.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np
from feast.value_type import ValueType

from feast_sequence.definitions.element_types import ELEMENT_TYPES, WIRE_VARINT
from feast_sequence.storage import block_columns as bc
from feast_sequence.storage.blocks import Block, ColumnBlock, shareable
from feast_sequence.storage.codec import TIMESTAMP_NUMBER, EventLayout, column_per_event, varint
from feast_sequence.storage.compaction import Served

TIMESTAMPS = -1  # ``field_values``' index of the event timestamps (whole seconds)
_ZIGZAG = (ValueType.INT32, ValueType.INT64, ValueType.UNIX_TIMESTAMP)  # stored as protobuf sint
_TEXT = (ValueType.STRING, ValueType.BYTES)
_ELEMENT_TAG = b"\x0a"  # a ``StringList``'s or ``BytesList``'s value: field 1, length-delimited
_ELEMENTS = "elements"  # ``ColumnBlock.derived``'s key part for a text field's list elements


def field_values(layout: EventLayout, sequence: Served, index: int) -> np.ndarray:
    """Field ``index`` of ``layout.fields`` (``TIMESTAMPS``: the event times in whole seconds) of
    one served sequence, newest first: int64 for integers and timestamps (int32 for INT32), float32,
    float64, bool, or an object array of str or bytes."""
    return fields_of(layout, [sequence], [index])[0]


def one_block(sequence: Served) -> Optional[ColumnBlock]:
    """The format 5 block a sequence is served from whole, if it is (every event of that block and
    nothing else: the usual sequence after compaction, until its next push), else None. What a
    reader derives from such a sequence it may keep with the block (``ColumnBlock.keep``)."""
    parts = [part for part in sequence.parts if part]
    if len(parts) != 1 or not isinstance(parts[0], tuple):
        return None
    block, k = parts[0]
    return block if isinstance(block, ColumnBlock) and k == block.count else None


def value_type_of(layout: EventLayout, index: int) -> ValueType:
    """The type ``fields_of`` reads field ``index`` as (INT64 for the timestamps)."""
    return ValueType.INT64 if index == TIMESTAMPS else layout.fields[index].value_type


def fields_of(
    layout: EventLayout, sequences: Sequence[Served], indexes: Sequence[int], elements: Collection[int] = ()
) -> List[np.ndarray]:
    """``field_values`` of every sequence back to back, one array per index of ``indexes``: format 5
    blocks' parts from their columns (decoded together), every other part (tails, row blocks) from
    one protobuf parse of all of them, so the work is per field, not per field and sequence. The
    string or bytes fields of ``elements`` come as ``list_elements`` of their values (an object
    array of bytes), kept per block like its typed values."""
    blocks: List[Tuple[ColumnBlock, int]] = []  # (a column block, how many of its events)
    pieces: List[int] = []  # per part, in order: its index in ``blocks``, or -1 - its index in ``spans``
    spans: List[Tuple[int, int]] = []  # parsed members' (start, end)
    data: List[bytes] = []
    members: List[Callable[[], Sequence[bytes]]] = []
    parsed = 0
    for sequence in sequences:
        for part in sequence.parts:
            if isinstance(part, tuple) and isinstance(part[0], ColumnBlock):
                pieces.append(len(blocks))
                blocks.append(part)
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
            pieces.append(-1 - len(spans))
            spans.append((parsed, parsed + k))
            parsed += k
    everyone = partial(_all_members, members)
    parsed_message = layout.message_class.FromString(b"".join(data)) if data else None  # once, for every field
    only_blocks = not spans
    out = []
    for index in indexes:
        value_type = value_type_of(layout, index)
        as_elements = index in elements and value_type in _TEXT
        tag = _tag(layout, index)
        whole = _WholeBlock(layout, blocks, index, _whole_block_elements if as_elements else _whole_block)
        key = (tag, _ELEMENTS if as_elements else value_type.value)  # an int: an enum hashes slowly
        from_blocks = [block.derived(key, partial(whole, block))[:k] for block, k in blocks]
        if only_blocks:
            column = from_blocks
        else:
            rest: Any = _message_column(layout, parsed_message, index, value_type, everyone)
            if as_elements:
                rest = list_elements(rest, value_type)
            column = [from_blocks[p] if p >= 0 else rest[slice(*spans[-1 - p])] for p in pieces]
        dtype = object if as_elements else ELEMENT_TYPES[value_type].numpy_dtype
        out.append(_joined(column, dtype))
    return out


def list_elements(values: np.ndarray, value_type: ValueType) -> np.ndarray:
    """Each string (UTF-8) or bytes value as it is written in Feast's ``StringList`` or ``BytesList``:
    its field's tag, its length and its bytes (an object array of bytes)."""
    raw = [v.encode("utf-8") for v in values.tolist()] if value_type == ValueType.STRING else values.tolist()
    return _object_array([_ELEMENT_TAG + varint(len(v)) + v for v in raw])


def _object_array(items: List[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _joined(pieces: List[np.ndarray], dtype: Any) -> np.ndarray:
    if not pieces:
        return np.zeros(0, dtype=dtype)
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _all_members(members: Sequence[Callable[[], Sequence[bytes]]]) -> List[bytes]:
    return [member for listed in members for member in listed()]


def _source(index: int) -> str:
    return "ts" if index == TIMESTAMPS else f"f{index + 1}"


def _first_members(block: Block, k: int) -> List[bytes]:
    return block.events().members[:k]


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


class _WholeBlock:
    """One field of a block's every event (``typed``: ``_whole_block`` or ``_whole_block_elements``),
    for the blocks whose derived column is not kept yet (the first read of a block): the first of
    them decodes the field of all ``blocks`` of the request together (``decode_together``), so a
    warm read, whose blocks keep their columns, does no per-block work here."""

    def __init__(self, layout: EventLayout, blocks: Sequence[Tuple[ColumnBlock, int]], index: int, typed: Any):
        self._layout, self._blocks, self._index, self._typed = layout, blocks, index, typed
        self._decoded = False

    def __call__(self, block: ColumnBlock) -> np.ndarray:
        index = self._index
        if not self._decoded:
            self._decoded = True
            decode_together(self._layout, [b for b, _ in self._blocks], index)
        result: np.ndarray = self._typed(block, _tag(self._layout, index), value_type_of(self._layout, index))
        return result


def decode_together(layout: EventLayout, blocks: Sequence[ColumnBlock], index: int) -> None:
    """Decode field ``index`` of ``blocks`` (one request's) ahead of reading it, its columns of all
    the blocks at once (``block_columns.columns_from``): a few numpy calls, not a few per block.
    Columns that do not decode so are left to be decoded (or refused) one by one when read."""
    column_blocks = {id(block): block for block in blocks}
    if len(column_blocks) < 2:
        return
    tag = _tag(layout, index)
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


def field_tag(layout: EventLayout, index: int) -> int:
    """Field ``index``'s protobuf tag in the stored events (``TIMESTAMPS``: the timestamps')."""
    return _tag(layout, index)


def _tag(layout: EventLayout, index: int) -> int:
    if index == TIMESTAMPS:
        return TIMESTAMP_NUMBER << 3 | WIRE_VARINT
    value_type = layout.fields[index].value_type
    return layout.numbers[index] << 3 | ELEMENT_TYPES[value_type].wire_type


def _whole_block(block: ColumnBlock, tag: int, value_type: ValueType) -> np.ndarray:
    """One field of every event of a block, typed (the field's null default where an event lacks it)."""
    element = ELEMENT_TYPES[value_type]
    out = np.full(block.count, element.null_default, dtype=element.numpy_dtype)
    column = block.columns().columns.get(tag)
    if column is not None:
        out[column.events] = _typed(column, column.values, value_type)
    return out


def _whole_block_elements(block: ColumnBlock, tag: int, value_type: ValueType) -> np.ndarray:
    """``list_elements`` of one text field of every event of a block, from its dictionary: each
    distinct value's bytes made once (an event without the field: the empty value's)."""
    column = block.columns().columns.get(tag)
    empty = _ELEMENT_TAG + b"\x00"
    if column is None:
        return _object_array([empty] * block.count)
    entries = column.dictionary or []
    if value_type == ValueType.STRING:
        column.texts()  # the stored text must be UTF-8, as when it is read as values
    distinct = _object_array([_ELEMENT_TAG + varint(len(entry)) + entry for entry in entries] + [empty])
    positions = np.full(block.count, len(entries), dtype=np.int64)
    positions[column.events] = column.values.astype(np.int64)
    elements: np.ndarray = distinct[positions]
    return elements


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
