"""Feast response values built from whole columns: the wire bytes of a feature's lists, with numpy.

Feast's response holds one ``Value`` per row, whose list is a protobuf repeated field. Filling it
value by value (``extend`` from a Python list) costs about 1.5 ms for 100 rows of 100 values, plus
~1 ms to turn the numpy column into Python objects first. Numeric columns need neither: their wire
bytes are the column's own bytes (floats) or its varints (integers, timestamps), computed for all
values at once, and protobuf parses them into the response in C (~0.05 ms). Only each row's few
header bytes are made in Python. Strings and bytes have no such shortcut here: they return None and
are filled value by value (Feast's format has no way to take them in bulk).

A timestamp list holding Feast's null sentinel is written as a ``list_val`` of single values, an
empty one for each null, exactly as online/null_timestamps.py re-encodes it; lists without a null
stay packed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import RepeatedValue
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import NULL_TIMESTAMP_INT_VALUE
from feast.value_type import ValueType

from feast_sequence.storage.codec import list_field_name, varint

_LEN = 2  # wire type of a length-delimited field


#: A length prefix's varint: rows of one column mostly share a few lengths.
_length = lru_cache(maxsize=4096)(varint)


def _tag(number: int) -> bytes:
    return varint(number << 3 | _LEN)


#: ``FeatureVector.values``: one entry per row.
_ENTRY = _tag(GetOnlineFeaturesResponse.FeatureVector.DESCRIPTOR.fields_by_name["values"].number)
#: Every ``*List`` message holds its values in field 1, packed.
_PACKED = _tag(1)
#: ``Value.list_val``, where a timestamp list holding a null goes.
_NULLABLE_LIST = _tag(ValueProto.DESCRIPTOR.fields_by_name["list_val"].number)
#: A null ``Value`` (no list set): what Feast answers for a missing entity.
NULL_ENTRY = _ENTRY + b"\x00"
#: Below this many values, ``extend`` value by value costs less than numpy's fixed costs (about
#: 50 µs a column against 0.1 µs a value).
BULK_FROM = 512
_FIXED_WIDTH: Dict[ValueType, str] = {ValueType.FLOAT: "<f4", ValueType.DOUBLE: "<f8"}
_VARINT = (ValueType.INT32, ValueType.INT64, ValueType.UNIX_TIMESTAMP, ValueType.BOOL)
_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)  # 10 groups of 7 bits hold a 64-bit varint
# One-byte protobuf tags (field number << 3 | wire type): RepeatedValue.val, a length-delimited
# Value, and Value.unix_timestamp_val, a varint. Both field numbers are below 16.
_ENTRY_TAG = RepeatedValue.DESCRIPTOR.fields_by_name["val"].number << 3 | 2
_SECONDS_TAG = ValueProto.DESCRIPTOR.fields_by_name["unix_timestamp_val"].number << 3
_FIVE_GROUPS = (1 << 28, 1 << 35)  # the values whose varint is 5 bytes


def varints(values: np.ndarray) -> Tuple[bytes, np.ndarray]:
    """Protobuf's varints of int64 (or narrower, or bool) values back to back, and each one's byte
    width; a negative value is written as its 64-bit two's complement (10 bytes), as protobuf does."""
    unsigned = values.astype(np.int64).view(np.uint64)
    if not len(unsigned):
        return b"", np.zeros(0, dtype=np.int64)
    groups = _groups(int(unsigned.max()))
    uniform = _groups(int(unsigned.min())) == groups  # one width for all (the usual column)
    widths = np.full(len(unsigned), groups, dtype=np.int64)
    if not uniform:
        widths[:] = 1
        for group in range(1, groups):
            widths += unsigned >= np.uint64(1 << (7 * group))
    # Built a group (a column) at a time: numpy broadcasts over a short trailing axis slowly.
    grid = np.empty((len(unsigned), groups), dtype=np.uint8)
    used = np.empty((len(unsigned), groups), dtype=bool)
    for group in range(groups):
        seven = (unsigned >> np.uint64(7 * group)).astype(np.uint8) & 0x7F
        continued = widths > group + 1
        grid[:, group] = seven | (continued.view(np.uint8) << 7)
        used[:, group] = widths > group
    return (grid.tobytes() if uniform else grid[used].tobytes()), widths


def _groups(value: int) -> int:
    """How many 7-bit groups the varint of a non-negative ``value`` takes."""
    return max(1, -(-value.bit_length() // 7))


def _packed(values: np.ndarray, value_type: ValueType) -> Optional[Tuple[bytes, np.ndarray]]:
    """The values' packed bytes and each one's width; None for strings and bytes."""
    if value_type in _FIXED_WIDTH:
        dtype = np.dtype(_FIXED_WIDTH[value_type])
        return values.astype(dtype).tobytes(), np.full(len(values), dtype.itemsize, dtype=np.int64)
    if value_type in _VARINT:
        return varints(values)
    return None


def list_value_entries(
    values: np.ndarray,
    lengths: np.ndarray,
    value_type: ValueType,
    nullable_timestamps: bool,
    bulk_from: int = BULK_FROM,
) -> Optional[List[bytes]]:
    """Per row (``lengths`` values each, back to back in ``values``), the wire bytes of one
    ``FeatureVector.values`` entry holding its list (an empty list for a row without values); None
    when the type has no bulk encoding (strings, bytes) or the column is too small to gain from it
    (fewer than ``bulk_from`` values). ``nullable_timestamps``: a timestamp list holding a null is written as
    ``list_val`` (see above), else packed with Feast's sentinel."""
    if len(values) < bulk_from:
        return None
    nullable: Dict[int, bytes] = {}
    if nullable_timestamps and value_type == ValueType.UNIX_TIMESTAMP:
        null = values == NULL_TIMESTAMP_INT_VALUE
        if null.any():
            nullable = _nullable_rows(values, lengths, null)
            values = np.where(null, 0, values)  # those rows are written from ``nullable``
    packed = _packed(values, value_type)
    if packed is None:
        return None
    blob, widths = packed
    bounds = np.zeros(len(widths) + 1, dtype=np.int64)
    np.cumsum(widths, out=bounds[1:])
    row_bounds = bounds[np.concatenate(([0], np.cumsum(lengths)))].tolist()
    bodies = [
        nullable[row] if row in nullable else (_PACKED + _length(end - start) + blob[start:end] if end > start else b"")
        for row, (start, end) in enumerate(zip(row_bounds, row_bounds[1:]))
    ]
    return _entries(bodies, value_type, set(nullable))


def text_list_entries(elements: np.ndarray, lengths: np.ndarray, value_type: ValueType) -> List[bytes]:
    """``list_value_entries`` of a string or bytes column given as its values' list elements
    (``storage/sequence_columns.list_elements``, each already in Feast's wire format): one join per row."""
    flat = elements.tolist()
    row_bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
    return _entries([b"".join(flat[start:end]) for start, end in zip(row_bounds, row_bounds[1:])], value_type)


def _entries(bodies: Sequence[bytes], value_type: ValueType, nullable: Collection[int] = ()) -> List[bytes]:
    """Per row, the ``FeatureVector.values`` entry of a list whose message body is ``bodies[row]``
    (an empty body: an empty list, not a null: the oneof is set with nothing in it); the rows of
    ``nullable`` hold ``list_val`` bodies (see above)."""
    list_tag = _tag(ValueProto.DESCRIPTOR.fields_by_name[list_field_name(value_type)].number)
    entries = []
    for row, body in enumerate(bodies):
        value = (_NULLABLE_LIST if row in nullable else list_tag) + _length(len(body)) + body
        entries.append(_ENTRY + _length(len(value)) + value)
    return entries


def _nullable_rows(seconds: np.ndarray, lengths: np.ndarray, null: np.ndarray) -> Dict[int, bytes]:
    """The ``RepeatedValue`` bytes of each row holding a null timestamp (``null``), by row: one
    numpy pass over those rows' values, sliced per row."""
    row_of = np.repeat(np.arange(len(lengths)), lengths)
    has_null = np.bincount(row_of[null], minlength=len(lengths)) > 0
    rows = np.flatnonzero(has_null)
    blob, widths = nullable_list_bytes(seconds[has_null[row_of]])
    ends = np.cumsum(widths)[np.cumsum(lengths[rows]) - 1].tolist()
    out: Dict[int, bytes] = {}
    start = 0
    for row, end in zip(rows.tolist(), ends):
        out[row] = blob[start:end]
        start = end
    return out


def entries_by_value(rows: Sequence[List[object]], list_field: str) -> List[bytes]:
    """What ``list_value_entries`` gives, for lists too small to gain from numpy: each filled value
    by value (``extend``) and serialized."""
    out = []
    for row in rows:
        value = ValueProto()
        target = getattr(value, list_field)
        if row:
            target.val.extend(row)
        else:  # an empty list, not a null: the oneof must be set
            target.SetInParent()
        body = value.SerializeToString()
        out.append(_ENTRY + _length(len(body)) + body)
    return out


def merge_entries(vector: object, entries: Sequence[Any], rows: Sequence[int]) -> None:
    """Append to a ``FeatureVector`` the value of each of ``rows`` (indexes into ``entries``: bytes,
    or any bytes-like object, such as a uint8 array)."""
    vector.MergeFromString(b"".join([entries[row] for row in rows]))  # type: ignore[attr-defined]


def nullable_list_bytes(seconds: np.ndarray) -> Tuple[bytes, np.ndarray]:
    """The wire bytes of a ``RepeatedValue`` of ``seconds``: per element, a ``Value`` with
    ``unix_timestamp_val``, or an empty ``Value`` for Feast's null sentinel; and each element's
    byte width."""
    null = seconds == NULL_TIMESTAMP_INT_VALUE
    present = seconds[~null]
    if not len(present) or (present.min() >= _FIVE_GROUPS[0] and present.max() < _FIVE_GROUPS[1]):
        return _five_group_bytes(seconds, null)
    # protobuf writes a negative int64 as its 64-bit two's complement; nulls are written empty.
    unsigned = np.where(null, 0, seconds).astype(np.uint64)
    top = int(unsigned.max())
    shifts = _SHIFTS[: max(1, -(-top.bit_length() // 7))]
    shifted = unsigned[:, None] >> shifts
    groups = np.maximum((shifted != 0).sum(axis=1), 1)  # this value's varint length
    width = 3 + len(shifts)  # entry tag, entry length, seconds tag, varint
    out = np.empty((len(seconds), width), np.uint8)
    out[:, 0] = _ENTRY_TAG
    out[:, 1] = np.where(null, 0, 1 + groups)
    out[:, 2] = _SECONDS_TAG
    continued = np.arange(len(shifts)) < (groups - 1)[:, None]
    out[:, 3:] = (shifted & np.uint64(0x7F)).astype(np.uint8) | (continued.astype(np.uint8) << 7)
    widths = np.where(null, 2, 3 + groups)
    return out[np.arange(width) < widths[:, None]].tobytes(), widths


def _five_group_bytes(seconds: np.ndarray, null: np.ndarray) -> Tuple[bytes, np.ndarray]:
    """``nullable_list_bytes`` when every present value is a 5-byte varint (1978 to 3058): fixed
    8-byte entries, a few times faster than the general case."""
    unsigned = seconds.view(np.uint64)
    out = np.empty((len(seconds), 8), np.uint8)
    out[:, 0] = _ENTRY_TAG
    out[:, 1] = np.where(null, 0, 6)
    out[:, 2] = _SECONDS_TAG
    for group in range(5):
        out[:, 3 + group] = (unsigned >> np.uint64(7 * group)).astype(np.uint8) & 0x7F
    out[:, 3:7] |= 0x80  # every group but the last continues
    keep = np.ones(out.shape, bool)
    keep[null, 2:] = False  # a null is an empty Value: the entry tag and a zero length
    return out[keep].tobytes(), np.where(null, 2, 8)
