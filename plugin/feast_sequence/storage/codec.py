"""How events are encoded for Redis and decoded into Feast values: pure logic, no I/O.

An event is stored as a run of protobuf wire-format elements: the timestamp (field number 1, whole
seconds; 2, the sub-second remainder when non-zero) and one element per event field, numbered by
the field's stored number (``EventField.stored_number``, derived from its name and recorded in the
registry) in a per-view message whose fields are all ``repeated``. Adding, removing or reordering
fields never renumbers the others, so stored events keep their meaning. Concatenating the stored
events of a sequence therefore *is* a serialized message whose
repeated fields are the sequence's columns, newest first, so a whole sequence is decoded by one
C-level ``ParseFromString`` instead of per-event Python work. See ``docs/storage-layout.md``.

The same bytes define identity and tie-breaking (``docs/concepts.md``), so every path that orders
events (Redis, the reference implementation, the offline jobs) uses this module.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Callable, Dict, List, Mapping, NoReturn, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import NULL_TIMESTAMP_INT_VALUE
from feast.value_type import ValueType
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from feast_sequence.definitions.element_types import ELEMENT_TYPES, KEY_TYPES, WIRE_VARINT
from feast_sequence.definitions.settings import EventField, SequenceSettings
from feast_sequence.errors import SequenceInputError

# Derived once from the element type table: the encoders and decoders index these plain dicts.
# Per element type: protobuf field type in the stored message, wire type, and Feast's list field.
_ELEMENT_FORMAT: Dict[ValueType, Tuple[int, int, str]] = {
    t: (e.proto_type, e.wire_type, e.list_field) for t, e in ELEMENT_TYPES.items()
}

#: A null event value is stored as Feast's default for a None inside a list feature, so lists stay
#: aligned by position (protobuf lists cannot hold nulls). See docs/concepts.md, "Nulls".
NULL_DEFAULTS: Dict[ValueType, Any] = {t: e.null_default for t, e in ELEMENT_TYPES.items()}


# --- wire-format primitives ---------------------------------------------------------------------

_SMALL_VARINTS = [bytes((i,)) for i in range(128)]


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL_VARINTS[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _tag(field_number: int, wire_type: int) -> bytes:
    return _varint((field_number << 3) | wire_type)


# --- event layout -------------------------------------------------------------------------------

TIMESTAMP_NUMBER, MICROS_NUMBER = 1, 2


@dataclass(frozen=True)
class EventLayout:
    """Field numbers of one view's stored events, and the message class that parses a sequence."""

    fields: Tuple[EventField, ...]
    numbers: Tuple[int, ...]  # stored field number of each field
    timestamp_number: int  # event time, whole seconds (what Feast's UnixTimestamp carries)
    micros_number: int  # sub-second remainder in microseconds, present only when non-zero
    dedup_positions: Tuple[int, ...]  # indices into ``fields`` of the dedup_by fields
    message_class: Any

    @property
    def deduplicated(self) -> bool:
        return bool(self.dedup_positions)


def layout_for(settings: SequenceSettings) -> EventLayout:
    names = settings.field_names
    return _layout(settings.fields, tuple(names.index(n) for n in settings.dedup_by))


@lru_cache(maxsize=256)
def _layout(fields: Tuple[EventField, ...], dedup_positions: Tuple[int, ...]) -> EventLayout:
    numbers = tuple(f.stored_number for f in fields)
    return EventLayout(
        fields=fields,
        numbers=numbers,
        timestamp_number=TIMESTAMP_NUMBER,
        micros_number=MICROS_NUMBER,
        dedup_positions=dedup_positions,
        message_class=_message_class(tuple(f.value_type for f in fields), numbers),
    )


@lru_cache(maxsize=256)
def _message_class(types: Tuple[ValueType, ...], numbers: Tuple[int, ...]) -> Any:
    """A message ``{repeated sint64 ts = 1; repeated sint64 us = 2; repeated T1 f1 = 3; ...}``."""
    name = "Events_" + "_".join(f"{int(t.value)}n{n}" for t, n in zip(types, numbers))
    file_proto = descriptor_pb2.FileDescriptorProto(
        name=f"feast_sequence_{name}.proto", package="feast_sequence.stored", syntax="proto3"
    )
    msg = file_proto.message_type.add(name=name)
    label = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    for i, t in enumerate(types, start=1):
        msg.field.add(name=f"f{i}", number=numbers[i - 1], type=_ELEMENT_FORMAT[t][0], label=label)
    sint64 = descriptor_pb2.FieldDescriptorProto.TYPE_SINT64
    msg.field.add(name="ts", number=TIMESTAMP_NUMBER, type=sint64, label=label)
    msg.field.add(name="us", number=MICROS_NUMBER, type=sint64, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"feast_sequence.stored.{name}"))


def _element_encoder(value_type: ValueType, field_number: int) -> Callable[[Any], bytes]:
    """A function encoding one (non-null, already converted) value as a tagged element."""
    wire = _ELEMENT_FORMAT[value_type][1]
    tag = _tag(field_number, wire)
    if value_type == ValueType.STRING:
        return lambda v: b"".join((tag, _varint(len(b := v.encode("utf-8"))), b))
    if value_type == ValueType.BYTES:
        return lambda v: b"".join((tag, _varint(len(v)), v))
    if value_type in (ValueType.INT32, ValueType.INT64, ValueType.UNIX_TIMESTAMP):
        return lambda v: tag + _varint(_zigzag(v))
    if value_type == ValueType.FLOAT:
        pack_f = struct.Struct("<f").pack
        return lambda v: tag + pack_f(math.nan if v != v else v)
    if value_type == ValueType.DOUBLE:
        pack_d = struct.Struct("<d").pack
        return lambda v: tag + pack_d(math.nan if v != v else v)
    if value_type == ValueType.BOOL:
        true, false = tag + b"\x01", tag + b"\x00"
        return lambda v: true if v else false
    raise TypeError(value_type)  # unreachable: settings only admit the types above


@dataclass(frozen=True)
class EncodedEvents:
    """A batch of events ready for Redis, in input row order.

    ``members`` are the stored events (sorted-set members). With ``dedup_by`` each member starts
    with the event's identity (its dedup_by fields, in dedup_by order), given in ``identities``;
    without it the identity is the whole member and ``identities`` is None.
    """

    entity_keys: List[bytes]
    scores_us: List[int]
    members: List[bytes]
    identities: Optional[List[bytes]]

    def __len__(self) -> int:
        return len(self.members)


def encode_columns(
    layout: EventLayout, columns: Sequence[Sequence[Any]], timestamps_us: Sequence[int]
) -> Tuple[List[bytes], Optional[List[bytes]]]:
    """Encode events given column-wise (nulls already replaced by defaults).

    Returns the members and, for views with dedup_by, the identities (a prefix of each member).
    Field order inside a member does not change how it parses (each element carries its field
    number), so the dedup_by fields go first and the identity needs no bytes of its own.
    """
    encoded_columns = [
        list(map(_element_encoder(f.value_type, number), col))
        for f, number, col in zip(layout.fields, layout.numbers, columns)
    ]
    ts_tag, us_tag = _tag(layout.timestamp_number, WIRE_VARINT), _tag(layout.micros_number, WIRE_VARINT)
    time_chunks = [
        ts_tag
        + _varint(_zigzag(us // 1_000_000))
        + (us_tag + _varint(_zigzag(us % 1_000_000)) if us % 1_000_000 else b"")
        for us in timestamps_us
    ]
    if not layout.deduplicated:
        return [b"".join(parts) for parts in zip(*encoded_columns, time_chunks)], None
    identity_columns = [encoded_columns[p] for p in layout.dedup_positions]
    other_columns = [c for i, c in enumerate(encoded_columns) if i not in layout.dedup_positions]
    identities = [b"".join(parts) for parts in zip(*identity_columns)]
    members = [b"".join(parts) for parts in zip(identities, *other_columns, time_chunks)]
    return members, identities


# --- entity keys --------------------------------------------------------------------------------

# Type letter of each join key type in entity key bytes.
_KEY_TYPE_PREFIX: Dict[ValueType, bytes] = {t: e.key_prefix or b"" for t, e in KEY_TYPES.items()}


def _entity_value_bytes(value_type: ValueType, value: Any) -> bytes:
    if value_type in (ValueType.INT32, ValueType.INT64):
        raw = str(int(value)).encode()
    elif value_type == ValueType.STRING:
        raw = value.encode("utf-8")
    else:
        raw = bytes(value)
    return _KEY_TYPE_PREFIX[value_type] + _varint(len(raw)) + raw


def entity_key_bytes(pairs: Sequence[Tuple[str, ValueType, Any]]) -> bytes:
    """Canonical bytes of an entity key given (join key, type, value), whatever order they come in.

    Always starts with a type letter, never ``}``, so it can sit inside a Redis hash tag.
    """
    return b"".join(_entity_value_bytes(t, v) for _, t, v in sorted(pairs, key=lambda p: p[0]))


_PROTO_KEY_FIELDS: Dict[str, ValueType] = {e.value_field: t for t, e in KEY_TYPES.items()}


def entity_key_bytes_from_values(row: Mapping[str, ValueProto]) -> bytes:
    """Entity key bytes from Feast's per-row ``{join key: ValueProto}`` (the read path)."""
    parts = []
    for name in sorted(row):
        value = row[name]
        kind = value.WhichOneof("val")
        value_type = _PROTO_KEY_FIELDS.get(kind)  # type: ignore[arg-type]
        if value_type is None:
            raise SequenceInputError(
                f"Entity key {name!r} has a {kind or 'null'} value; sequence views support "
                "int32, int64, string and bytes join keys."
            )
        parts.append(_entity_value_bytes(value_type, getattr(value, kind)))  # type: ignore[arg-type]
    return b"".join(parts)


def entity_key_bytes_from_proto(key: EntityKeyProto) -> bytes:
    return entity_key_bytes_from_values(dict(zip(key.join_keys, key.entity_values)))


# --- decoding -----------------------------------------------------------------------------------


def list_field_name(value_type: ValueType) -> str:
    return _ELEMENT_FORMAT[value_type][2]


def decode_plan(layout: EventLayout, requested: Sequence[Tuple[str, int]]) -> Tuple[Tuple[str, str, str], ...]:
    """Per requested feature (name, field index or -1 for the timestamps): its Feast list field and
    the stored message's field. Computed once per request, not per entity."""
    return tuple(
        (name, "unix_timestamp_list_val", "ts")
        if index < 0
        else (name, _ELEMENT_FORMAT[layout.fields[index].value_type][2], f"f{index + 1}")
        for name, index in requested
    )


def decode_sequence(
    layout: EventLayout, members: Sequence[bytes], plan: Sequence[Tuple[str, str, str]]
) -> Tuple[Optional[datetime], Dict[str, ValueProto]]:
    """Turn a stored sequence (its members, newest first) into Feast list values.

    One C-level parse of the concatenated members gives every column at once. Returns the newest
    event's time (None when empty) and one ``ValueProto`` per feature of ``decode_plan``.
    """
    out: Dict[str, ValueProto] = {}
    if not members:  # empty lists, not nulls: the oneof must still be set
        for name, list_field, _ in plan:
            out[name] = value = ValueProto()
            getattr(value, list_field).SetInParent()
        return None, out
    message = layout.message_class.FromString(b"".join(members))
    count = len(message.ts)
    for name, list_field, source in plan:
        out[name] = value = ValueProto()
        column = getattr(message, source)
        if len(column) != count:  # events stored before this field was added to the schema
            column = column_per_event(layout, members, source)
        getattr(value, list_field).val.extend(column)
    return datetime.fromtimestamp(message.ts[0], tz=timezone.utc), out


def column_per_event(layout: EventLayout, members: Sequence[bytes], source: str) -> List[Any]:
    """One value per event, the field's null default where an event lacks the field."""
    index = int(source[1:]) - 1
    default = NULL_DEFAULTS[layout.fields[index].value_type]
    column = []
    for member in members:
        values = getattr(layout.message_class.FromString(member), source)
        column.append(values[0] if values else default)
    return column


def decode_members(layout: EventLayout, members: Sequence[bytes]) -> Tuple[List[List[Any]], List[int]]:
    """Stored events one by one: their field columns (None where an event lacks a field, e.g.
    one added to the schema later) and exact timestamps in microseconds."""
    columns: List[List[Any]] = [[] for _ in layout.fields]
    times: List[int] = []
    for member in members:
        message = layout.message_class.FromString(member)
        times.append(message.ts[0] * 1_000_000 + (message.us[0] if len(message.us) else 0))
        for i, column in enumerate(columns):
            values = getattr(message, f"f{i + 1}")
            column.append(values[0] if len(values) else None)
    return columns, times


# --- converting pushed data ---------------------------------------------------------------------


def _bad_row(column: str, series: pd.Series, position: int, problem: str) -> SequenceInputError:
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
        raise _bad_row(column, series, int(bad[0]), problem)
    micros: np.ndarray = pd.DatetimeIndex(parsed).as_unit("us").asi8
    outside = np.flatnonzero((micros < MIN_EVENT_US) | (micros > MAX_EVENT_US))
    if len(outside):
        raise _bad_row(column, series, int(outside[0]), f"is outside {EVENT_TIME_RANGE}")
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
        raise _bad_row(
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
            raise _bad_row(column, series, max(aware, naive), "mixes zone-aware and naive timestamps in one column")


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
        raise _bad_row(
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
            raise _bad_row(column, series, position, problem) from exc
    raise SequenceInputError(
        f"Column {column!r} has mixed types that cannot be converted to {value_type.name}. "
        "The batch was rejected; nothing was written."
    )


def entity_column_bytes(join_keys: Sequence[Tuple[str, ValueType]], df: pd.DataFrame) -> List[bytes]:
    """Canonical entity key bytes per row of ``df``."""
    columns = []
    for name, value_type in sorted(join_keys):
        if value_type not in _KEY_TYPE_PREFIX:
            raise SequenceInputError(
                f"Join key {name!r} has type {value_type.name}; sequence views support int32, "
                "int64, string and bytes join keys."
            )
        series = df[name]
        nulls = np.flatnonzero(series.isna().to_numpy())
        if len(nulls):
            raise _bad_row(name, series, int(nulls[0]), "is null (entity keys cannot be null)")
        if value_type in (ValueType.INT32, ValueType.INT64):
            _refuse_float_keys(name, value_type, series)
        values = column_values(name, value_type, series)
        prefix = _KEY_TYPE_PREFIX[value_type]
        if value_type in (ValueType.INT32, ValueType.INT64):
            raws = [str(v).encode() for v in values]
        elif value_type == ValueType.STRING:
            raws = [v.encode("utf-8") for v in values]
        else:
            raws = values
        columns.append([prefix + _varint(len(r)) + r for r in raws])
    if len(columns) == 1:
        return columns[0]
    return [b"".join(parts) for parts in zip(*columns)]


def _refuse_float_keys(name: str, value_type: ValueType, series: pd.Series) -> None:
    """An integer join key takes integers only, as reads do (online/entity_rows.py): a float key such
    as 1.0 would be stored under entity 1 while a read of 1.0 is refused."""
    kind = series.dtype.kind
    if kind == "f":
        position = 0
    elif kind == "O":
        floats = [i for i, v in enumerate(series.to_numpy()) if isinstance(v, (float, np.floating))]
        if not floats:
            return
        position = floats[0]
    else:
        return
    raise _bad_row(
        name,
        series,
        position,
        f"is a float; join key {name!r} is {value_type.name} and takes integers only (reads refuse float "
        "keys), so convert the column to int",
    )
