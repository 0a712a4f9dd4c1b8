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
than built value by value in Python (which small vectors still are: numpy costs more there). A use
case's responses are built with these lists already (serving/response_values.py).
"""

from __future__ import annotations

from itertools import chain
from typing import Any, List, Optional, Tuple

import numpy as np
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import NULL_TIMESTAMP_INT_VALUE

from feast_sequence.serving.response_values import nullable_list_bytes

_TIMESTAMP_LIST = "unix_timestamp_list_val"
_NULL_VARINT = ValueProto(int64_val=NULL_TIMESTAMP_INT_VALUE).SerializeToString()[1:]  # without the tag
# Below this many values in a vector, value-by-value Python is faster than numpy's fixed cost.
_NUMPY_FROM = 256


def encode_null_timestamps(response: Any) -> None:
    """Re-encode, in place, every timestamp list of a ``GetOnlineFeaturesResponse`` that holds a null."""
    for vector in response.results:
        # A timestamp vector's bytes searched whole first: most hold no null, and serializing a
        # vector at once costs a fraction of serializing each of its values.
        if _kind(vector) != _TIMESTAMP_LIST or _NULL_VARINT not in vector.SerializeToString():
            continue
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


def _kind(vector: Any) -> Optional[str]:
    """The value type of a vector: that of its first non-null value (every value has one type)."""
    for value in vector.values:
        kind = value.WhichOneof("val")
        if kind is not None:
            return str(kind)
    return None


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
