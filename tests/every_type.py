"""One event field of every element type (short names), for the codec and block tests that encode
events of all types."""

from __future__ import annotations

from feast.value_type import ValueType

from feast_sequence.definitions.settings import EventField

FIELDS = (
    EventField("s", ValueType.STRING),
    EventField("b", ValueType.BYTES),
    EventField("i32", ValueType.INT32),
    EventField("i64", ValueType.INT64),
    EventField("f", ValueType.FLOAT),
    EventField("d", ValueType.DOUBLE),
    EventField("ok", ValueType.BOOL),
    EventField("when", ValueType.UNIX_TIMESTAMP),
)
