"""Null timestamps in online responses: sent as nulls, not as Feast's sentinel number.

Feast's ``unix_timestamp_list_val`` holds int64 seconds and cannot hold a null, so a null timestamp
(a padded slot, a null ``UnixTimestamp`` value, an enrichment miss) is stored as Feast's sentinel
``NULL_TIMESTAMP_INT_VALUE`` (int64 min). Feast's Python client reads the sentinel as ``None``,
but its HTTP server (``feast serve``) writes it as the number -9223372036854775808. A timestamp
list holding a null is therefore re-encoded as a ``list_val`` of single values, an empty value for
each null: Feast's Python client reads it exactly as before (UTC datetimes and ``None``), and its
HTTP server writes epoch seconds and ``null``. Lists without a null keep the packed encoding.
"""

from __future__ import annotations

from typing import Any, List

from feast.type_map import NULL_TIMESTAMP_INT_VALUE

_TIMESTAMP_LIST = "unix_timestamp_list_val"


def encode_null_timestamps(response: Any) -> None:
    """Re-encode, in place, every timestamp list of a ``GetOnlineFeaturesResponse`` that holds a null."""
    for vector in response.results:
        for value in vector.values:
            kind = value.WhichOneof("val")
            if kind is None:  # a null row: look at the next one for the vector's type
                continue
            if kind != _TIMESTAMP_LIST:  # every value of a vector has one type
                break
            seconds = list(value.unix_timestamp_list_val.val)
            if NULL_TIMESTAMP_INT_VALUE in seconds:
                _as_nullable_list(value, seconds)


def _as_nullable_list(value: Any, seconds: List[int]) -> None:
    nested = value.list_val.val  # setting the oneof's list_val clears unix_timestamp_list_val
    for second in seconds:
        element = nested.add()
        if second != NULL_TIMESTAMP_INT_VALUE:
            element.unix_timestamp_val = second
