"""Null timestamps in online responses: sent as nulls, not as Feast's sentinel number.

Feast's ``unix_timestamp_list_val`` holds int64 seconds and cannot hold a null, so a null timestamp
(a padded slot, a null ``UnixTimestamp`` value, an enrichment miss) is stored as Feast's sentinel
``NULL_TIMESTAMP_INT_VALUE`` (int64 min). Feast's Python client reads the sentinel as ``None``,
but its HTTP server (``feast serve``) writes it as the number -9223372036854775808. A timestamp
list holding a null is therefore re-encoded as a ``list_val`` of single values, an empty value for
each null: Feast's Python client reads it exactly as before (UTC datetimes and ``None``), and its
HTTP server writes epoch seconds and ``null``. Lists without a null keep the packed encoding.

Padded responses hold many such lists (a use case padded to 100 slots, 100 rows: 10,000 values), so
the ``list_val`` wire bytes of a large vector are built with numpy and parsed once per row, rather
than built value by value in Python (which small vectors still are: numpy costs more there).
"""

from __future__ import annotations

from itertools import chain
from typing import Any, List, Tuple

import numpy as np
from feast.protos.feast.types.Value_pb2 import RepeatedValue
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import NULL_TIMESTAMP_INT_VALUE

_TIMESTAMP_LIST = "unix_timestamp_list_val"
# One-byte protobuf tags (field number << 3 | wire type): RepeatedValue.val, a length-delimited
# Value, and Value.unix_timestamp_val, a varint. Both field numbers are below 16.
_ENTRY_TAG = RepeatedValue.DESCRIPTOR.fields_by_name["val"].number << 3 | 2
_SECONDS_TAG = ValueProto.DESCRIPTOR.fields_by_name["unix_timestamp_val"].number << 3
_NULL_VARINT = ValueProto(int64_val=NULL_TIMESTAMP_INT_VALUE).SerializeToString()[1:]  # without the tag
# Below this many values in a vector, value-by-value Python is faster than numpy's fixed cost.
_NUMPY_FROM = 256
_FIVE_GROUPS = (1 << 28, 1 << 35)  # the values whose varint is 5 bytes
_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)  # 10 groups of 7 bits hold an int64


def encode_null_timestamps(response: Any) -> None:
    """Re-encode, in place, every timestamp list of a ``GetOnlineFeaturesResponse`` that holds a null."""
    for vector in response.results:
        nullable: List[Tuple[Any, Any]] = []
        for value in vector.values:
            kind = value.WhichOneof("val")
            if kind is None:  # a null row: look at the next one for the vector's type
                continue
            if kind != _TIMESTAMP_LIST:  # every value of a vector has one type
                break
            # A substring search of the packed wire bytes, at C speed: the sentinel's varint can
            # only occur there as a whole value (its first 9 bytes all continue a varint).
            if _NULL_VARINT in value.unix_timestamp_list_val.SerializeToString():
                nullable.append((value, value.unix_timestamp_list_val.val))
        if nullable:
            _as_nullable_lists(nullable)


def _as_nullable_lists(rows: List[Tuple[Any, Any]]) -> None:
    counts = [len(seconds) for _, seconds in rows]
    if sum(counts) < _NUMPY_FROM:
        for value, seconds in rows:
            _as_nullable_list(value, list(seconds))
        return
    blob, widths = nullable_list_bytes(np.fromiter(chain.from_iterable(row for _, row in rows), np.int64, sum(counts)))
    ends = np.cumsum(widths)[np.cumsum(counts) - 1].tolist()
    start = 0
    for (value, _), end in zip(rows, ends):
        # Merging into the oneof's list_val selects it, which clears unix_timestamp_list_val.
        value.list_val.MergeFromString(blob[start:end])
        start = end


def _as_nullable_list(value: Any, seconds: List[int]) -> None:
    nested = value.list_val.val  # selecting the oneof's list_val clears unix_timestamp_list_val
    for second in seconds:
        if second == NULL_TIMESTAMP_INT_VALUE:
            nested.add()
        else:
            nested.add(unix_timestamp_val=second)


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
