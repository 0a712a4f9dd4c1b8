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
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from feast_sequence.definitions.element_types import ELEMENT_TYPES, WIRE_VARINT
from feast_sequence.definitions.settings import EventField, SequenceSettings

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


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer (also the length prefix of entity key parts)."""
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
    return varint((field_number << 3) | wire_type)


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
        return lambda v: b"".join((tag, varint(len(b := v.encode("utf-8"))), b))
    if value_type == ValueType.BYTES:
        return lambda v: b"".join((tag, varint(len(v)), v))
    if value_type in (ValueType.INT32, ValueType.INT64, ValueType.UNIX_TIMESTAMP):
        return lambda v: tag + varint(_zigzag(v))
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
        + varint(_zigzag(us // 1_000_000))
        + (us_tag + varint(_zigzag(us % 1_000_000)) if us % 1_000_000 else b"")
        for us in timestamps_us
    ]
    if not layout.deduplicated:
        return [b"".join(parts) for parts in zip(*encoded_columns, time_chunks)], None
    identity_columns = [encoded_columns[p] for p in layout.dedup_positions]
    other_columns = [c for i, c in enumerate(encoded_columns) if i not in layout.dedup_positions]
    identities = [b"".join(parts) for parts in zip(*identity_columns)]
    members = [b"".join(parts) for parts in zip(identities, *other_columns, time_chunks)]
    return members, identities


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
