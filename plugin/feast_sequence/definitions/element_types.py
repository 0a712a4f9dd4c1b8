"""The element types an event field may have, and the Feast value type each is served as."""

from __future__ import annotations

from typing import Mapping

from feast.types import Array, FeastType, PrimitiveFeastType
from feast.value_type import ValueType

from feast_sequence.errors import SequenceDefinitionError

#: Element types an event field may have, and the Feast list type a sequence of them is served as.
EVENT_FIELD_TYPES: Mapping[PrimitiveFeastType, ValueType] = {
    PrimitiveFeastType.STRING: ValueType.STRING,
    PrimitiveFeastType.BYTES: ValueType.BYTES,
    PrimitiveFeastType.INT32: ValueType.INT32,
    PrimitiveFeastType.INT64: ValueType.INT64,
    PrimitiveFeastType.FLOAT32: ValueType.FLOAT,
    PrimitiveFeastType.FLOAT64: ValueType.DOUBLE,
    PrimitiveFeastType.BOOL: ValueType.BOOL,
    PrimitiveFeastType.UNIX_TIMESTAMP: ValueType.UNIX_TIMESTAMP,
}


def element_value_type(view_name: str, field_name: str, dtype: FeastType) -> ValueType:
    """The value type of one event's value for a field declared with ``dtype`` (scalar or Array)."""
    base = dtype.base_type if isinstance(dtype, Array) else dtype
    if isinstance(base, PrimitiveFeastType) and base in EVENT_FIELD_TYPES:
        return EVENT_FIELD_TYPES[base]
    allowed = ", ".join(sorted(t.name.title() for t in EVENT_FIELD_TYPES))
    raise SequenceDefinitionError(
        f"Sequence view '{view_name}': field {field_name!r} has type {dtype}; "
        f"event fields must be one of {allowed}."
    )
