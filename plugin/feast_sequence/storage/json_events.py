"""A few pushed rows given as JSON columns (``feast-sequence serve``'s ``/push``), encoded without
pandas: no DataFrame, no ``pd.to_datetime``. Pure logic, no I/O.

It takes only what it can convert exactly as the frame path does (storage/conversion.py through
``append.encode_frame``) and returns the same events, byte for byte: strings, in-range integers,
finite floats that the field's type holds exactly, booleans, and ISO 8601 timestamps of one strict
shape. Anything else (a null, a number for a time, a value the frame path would refuse, a missing or
ragged column) returns None, and the caller takes the frame path, which accepts it or raises its
usual error: the errors are the frame path's by construction (tests/test_json_events.py compares them).
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from feast.value_type import ValueType

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.storage.append import check_sizes
from feast_sequence.storage.codec import EncodedEvents, encode_columns, layout_for
from feast_sequence.storage.conversion import MAX_EVENT_US, MIN_EVENT_US, datetime_to_us
from feast_sequence.storage.entity_keys import entity_key_bytes

#: Rows up to which ``/push`` tries this path; a bigger request is cheaper as a frame.
MAX_ROWS = 64

# A date, or a date and time (seconds, microseconds and an offset optional). One shape for every row
# (checked with the digits masked): pandas parses a column with the format it guesses from the first
# value, so a column of mixed shapes is the frame path's to accept or refuse.
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?")
_DIGIT = re.compile(r"\d")


def _string(value: Any) -> Optional[Any]:
    if type(value) is not str:
        return None
    try:
        value.encode("utf-8")  # a lone surrogate is refused by the frame path
    except UnicodeEncodeError:
        return None
    return value


def _integer(bits: int) -> Callable[[Any], Optional[Any]]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return lambda v: v if type(v) is int and low <= v <= high else None


def _real(exact_integers: int, largest: float) -> Callable[[Any], Optional[Any]]:
    """Finite floats up to ``largest`` (Float32: its exact integers, past which the frame path checks
    for overflow and changed integers), which the frame path's cast passes unchanged; ints the type
    holds exactly, as floats."""

    def convert(value: Any) -> Optional[Any]:
        if type(value) is int:
            return float(value) if abs(value) <= exact_integers else None
        if type(value) is float and abs(value) <= largest:  # False for NaN and infinities
            return value
        return None

    return convert


def _boolean(value: Any) -> Optional[Any]:
    return value if type(value) is bool else None


_CONVERT: Dict[ValueType, Callable[[Any], Optional[Any]]] = {
    ValueType.STRING: _string,
    ValueType.INT32: _integer(32),
    ValueType.INT64: _integer(64),
    ValueType.FLOAT: _real(2**24, 2**24),
    ValueType.DOUBLE: _real(2**53, sys.float_info.max),
    ValueType.BOOL: _boolean,
}
_KEY_TYPES = (ValueType.INT32, ValueType.INT64, ValueType.STRING)


def encode_json_columns(settings: SequenceSettings, columns: Mapping[str, Sequence[Any]]) -> Optional[EncodedEvents]:
    """The events of ``columns`` for the view, as ``encode_frame`` would encode them from a frame of
    the same columns; None when any value needs the frame path (which then accepts or refuses it)."""
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1 or not 0 < next(iter(lengths)) <= MAX_ROWS or settings.enrichments:
        return None
    timestamps_us = _timestamps_us(columns.get(settings.timestamp_field))
    if timestamps_us is None:
        return None
    keys = _entity_keys(settings, columns)
    if keys is None:
        return None
    values: List[List[Any]] = []
    for field in settings.fields:
        convert = _CONVERT.get(field.value_type)
        column = columns.get(field.name)
        if convert is None or column is None:
            return None
        converted = [convert(v) for v in column]
        if None in converted:
            return None
        values.append(converted)
    members, identities = encode_columns(layout_for(settings), values, timestamps_us)
    check_sizes(settings, members)
    return EncodedEvents(keys, timestamps_us, members, identities)


def _timestamps_us(column: Optional[Sequence[Any]]) -> Optional[List[int]]:
    if column is None or any(type(v) is not str for v in column):
        return None
    shape = _DIGIT.sub("0", column[0])
    out = []
    for text in column:
        if not _ISO.fullmatch(text) or _DIGIT.sub("0", text) != shape:
            return None
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:  # a day or hour that does not exist
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        micros = datetime_to_us(moment)
        if not MIN_EVENT_US <= micros <= MAX_EVENT_US:
            return None
        out.append(micros)
    return out


def _entity_keys(settings: SequenceSettings, columns: Mapping[str, Sequence[Any]]) -> Optional[List[bytes]]:
    parts = []
    for name, value_type in settings.join_keys:
        column = columns.get(name)
        if value_type not in _KEY_TYPES or column is None:
            return None
        converted = [_CONVERT[value_type](v) for v in column]
        if None in converted:
            return None
        parts.append([(name, value_type, v) for v in converted])
    return [entity_key_bytes(row) for row in zip(*parts)]
