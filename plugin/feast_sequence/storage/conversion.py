"""Pushed data converted exactly into event values: timestamps into microseconds, columns into
Python values of each element type, or a ``SequenceInputError`` naming the column, row and value.

Pure logic, no I/O; the wire format (codec.py) encodes what this module returns.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, NoReturn, Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.type_map import NULL_TIMESTAMP_INT_VALUE
from feast.value_type import ValueType

from feast_sequence.definitions.element_types import ELEMENT_TYPES
from feast_sequence.errors import SequenceInputError
from feast_sequence.storage.codec import NULL_DEFAULTS


def bad_row(column: str, series: pd.Series, position: int, problem: str) -> SequenceInputError:
    """The error for one bad value of a column: its column, row, index label and value."""
    label, value = series.index[position], series.iloc[position]
    if isinstance(value, np.generic):  # show 2.5, not np.float64(2.5)
        value = value.item()
    if isinstance(label, np.generic):
        label = label.item()
    return SequenceInputError(
        f"Column {column!r}, row {position} (index {label!r}): value {value!r} "
        f"{problem}. The batch was rejected; nothing was written."
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


def datetime_to_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly; naive datetimes are UTC (Feast's convention)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // _ONE_US


#: Event times must fall in [1970-01-01, 2255-06-05T23:47:34.740991] UTC: scores are non-negative
#: microseconds, and a sorted-set score is a double, exact for integers only up to 2**53.
MIN_EVENT_US, MAX_EVENT_US = 0, 2**53 - 1
EVENT_TIME_RANGE = (
    "1970-01-01 .. 2255-06-05 UTC (the latest is 2255-06-05T23:47:34.740991Z, 2**53 - 1 µs: "
    "a Redis score holds no later time to the microsecond)"
)


def timestamps_to_us(column: str, series: pd.Series) -> np.ndarray:
    """Event times as integer microseconds since the epoch (UTC); tz-naive times are taken as UTC.

    A column that mixes zone-aware and naive values is rejected: which zone the naive ones mean
    would be a guess.
    """
    _reject_numbers(column, series)
    if series.dtype == object:
        _reject_mixed_zones(column, series)
    try:
        parsed = pd.to_datetime(series, utc=True, errors="coerce")
    except (TypeError, ValueError) as exc:
        raise SequenceInputError(f"Column {column!r} cannot be read as timestamps: {exc}") from exc
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        problem = "is null" if pd.isna(series.iloc[bad[0]]) else "is not a timestamp (or out of range)"
        raise bad_row(column, series, int(bad[0]), problem)
    micros: np.ndarray = pd.DatetimeIndex(parsed).as_unit("us").asi8
    outside = np.flatnonzero((micros < MIN_EVENT_US) | (micros > MAX_EVENT_US))
    if len(outside):
        raise bad_row(column, series, int(outside[0]), f"is outside {EVENT_TIME_RANGE}")
    return micros


def _reject_numbers(column: str, series: pd.Series) -> None:
    """Refuse numbers: pandas reads them as nanoseconds since the epoch, so epoch seconds would
    silently become 1970-01-01T00:00:01. Only the caller knows the unit."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return  # not numbers; pd.to_datetime refuses them below
    if pd.api.types.is_numeric_dtype(series.dtype):
        found = np.flatnonzero(series.notna().to_numpy())
    elif series.dtype == object:
        values = series.tolist()
        if not any(map(_is_number_type, set(map(type, values)))):  # one pass over types, not values
            return
        found = np.flatnonzero([_is_number_type(type(v)) and v == v for v in values])  # NaN is a null
    else:
        return
    if len(found):
        raise bad_row(
            column,
            series,
            int(found[0]),
            'is a number, not a timestamp; convert epoch numbers first, e.g. pd.to_datetime(col, unit="s") '
            'for seconds (unit="ms", "us" or "ns" for finer ones)',
        )


def _is_number_type(kind: type) -> bool:
    return issubclass(kind, (int, float, np.number)) and not issubclass(kind, (bool, np.bool_))


def _reject_mixed_zones(column: str, series: pd.Series) -> None:
    aware = naive = None
    for position, value in enumerate(series.tolist()):
        if isinstance(value, datetime):
            if value.tzinfo is None:
                naive = position if naive is None else naive
            else:
                aware = position if aware is None else aware
        if aware is not None and naive is not None:
            raise bad_row(column, series, max(aware, naive), "mixes zone-aware and naive timestamps in one column")


_ACCEPTS = {t: e.arrow_accepts for t, e in ELEMENT_TYPES.items() if e.arrow_accepts}
#: Arrow type of one value of each element type (timestamps as whole seconds).
ARROW_ELEMENT: Dict[ValueType, pa.DataType] = {t: e.arrow_type for t, e in ELEMENT_TYPES.items()}
# What pushed columns are cast to (timestamps take their own path, timestamps_to_us).
_ARROW_TARGET: Dict[ValueType, pa.DataType] = {
    t: arrow for t, arrow in ARROW_ELEMENT.items() if t != ValueType.UNIX_TIMESTAMP
}


def column_values(column: str, value_type: ValueType, data: Union[pd.Series, pa.Array, pa.ChunkedArray]) -> List[Any]:
    """Python values of one column (pandas or Arrow), converted to the field's type, nulls as defaults.

    Raises ``SequenceInputError`` naming the first row whose value cannot be converted exactly.
    """
    if value_type == ValueType.UNIX_TIMESTAMP:
        series = data if isinstance(data, pd.Series) else data.to_pandas()
        present = series.notna().to_numpy()
        us = np.full(len(series), 0, dtype=np.int64)
        if present.any():
            us[present] = timestamps_to_us(column, series[present])
        seconds = np.floor_divide(us, 1_000_000)
        timestamps: List[Any] = np.where(present, seconds, NULL_TIMESTAMP_INT_VALUE).tolist()
        return timestamps
    default = NULL_DEFAULTS[value_type]
    array: Optional[pa.Array]
    if isinstance(data, pd.Series):
        try:
            array = pa.array(data, from_pandas=True)
        except _UNCONVERTIBLE:  # the row-by-row search below names the offending value
            array = None
    else:
        array = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
    if array is not None and not pa.types.is_null(array.type):
        if not any(check(array.type) for check in _ACCEPTS[value_type]):
            array = None
        else:
            source = array
            try:
                array = array.cast(_ARROW_TARGET[value_type], safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                array = None
            if array is not None and value_type == ValueType.FLOAT and pa.types.is_floating(source.type):
                _reject_float32_changes(column, data, source, array)
    if array is None:
        series = data if isinstance(data, pd.Series) else pd.Series(data.to_pylist(), dtype=object)
        _raise_first_unconvertible(column, value_type, series)
    if pa.types.is_null(array.type):
        return [default] * len(array)
    values: List[Any] = array.to_pylist()
    if array.null_count:
        values = [default if v is None else v for v in values]
    return values


#: What Arrow raises for a value it cannot convert: besides its own errors, OverflowError for an
#: integer past 64 bits and UnicodeEncodeError for text that is not valid Unicode (a lone surrogate).
_UNCONVERTIBLE = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError)


def _reject_float32_changes(column: str, data: Any, source: pa.Array, target: pa.Array) -> None:
    """Float32 rounds fractions (inherent to the type), but a finite value that overflows to ±inf, or
    an integral value past 2**24 that lands on another integer, would be a different value stored
    silently. Arrow's safe cast checks this for integer sources only, not for floating ones."""
    before = source.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls are NaN
    after = target.to_numpy(zero_copy_only=False).astype(np.float64)
    finite = np.isfinite(before)
    overflow = finite & np.isinf(after)
    integral = finite & (np.abs(before) > 2**24) & (np.floor(before) == before)
    changed = np.flatnonzero(overflow | (integral & (after != before)))
    if len(changed):
        position = int(changed[0])
        series = data if isinstance(data, pd.Series) else pd.Series(source.to_pylist(), dtype=object)
        raise bad_row(
            column,
            series,
            position,
            f"cannot be converted to FLOAT: Float32 would store it as {float(after[position])!r}; "
            "declare the field Float64 (or Int64 for whole numbers)",
        )


def _raise_first_unconvertible(column: str, value_type: ValueType, series: pd.Series) -> NoReturn:
    """Find and report the first value of ``series`` that is not a valid ``value_type``."""
    target = _ARROW_TARGET[value_type]
    for position, value in enumerate(series.tolist()):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        try:
            single = pa.array([value], from_pandas=True)
            if not any(check(single.type) for check in _ACCEPTS[value_type]):
                raise TypeError(single.type)
            single.cast(target, safe=True)
        except (*_UNCONVERTIBLE, pa.ArrowNotImplementedError, TypeError) as exc:
            problem = f"cannot be converted to {value_type.name}"
            if isinstance(exc, OverflowError):
                problem += " (out of range)"
            elif isinstance(exc, UnicodeEncodeError):
                problem += f" ({exc.reason}: it is not valid Unicode text)"
            raise bad_row(column, series, position, problem) from exc
    raise SequenceInputError(
        f"Column {column!r} has mixed types that cannot be converted to {value_type.name}. "
        "The batch was rejected; nothing was written."
    )
