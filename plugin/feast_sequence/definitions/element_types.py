"""The element types an event field may have, and everything each one means, in one table.

An element type is one event value's type: how it is declared (Feast type), served (Feast value type
and ``Value`` field), stored (protobuf field type and wire type, ``docs/storage-layout.md``), what a
null becomes, and how it looks in numpy, Arrow, Spark and Great Expectations. Modules derive the
mappings they need from :data:`ELEMENT_TYPES` once, at import, as plain dicts: hot paths index those
dicts, never this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np
import pyarrow as pa
from feast.type_map import NULL_TIMESTAMP_INT_VALUE
from feast.types import Array, FeastType, PrimitiveFeastType
from feast.value_type import ValueType
from google.protobuf.descriptor_pb2 import FieldDescriptorProto

from feast_sequence.errors import SequenceDefinitionError

#: Protobuf wire types (the low three bits of an element's tag).
WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_I32 = 0, 1, 2, 5

# Numeric types take any numeric column: the cast is exact (safe=True), so 2.0 becomes an int and 2.5
# is refused with the row named.
_NUMERIC = (pa.types.is_integer, pa.types.is_floating)
_INT_GE_TYPES = ("int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64")
_FLOAT_GE_TYPES = ("float16", "float32", "float64", "Float32", "Float64")


@dataclass(frozen=True)
class ElementType:
    """One element type and its form in every place an event value goes."""

    value_type: ValueType
    feast_type: PrimitiveFeastType
    """How a field of this type is declared (``Field(dtype=...)``, scalar or ``Array``)."""
    proto_type: int
    """``FieldDescriptorProto.TYPE_*`` of the field in a view's stored message (ints are zigzag)."""
    wire_type: int
    value_field: str
    """Feast ``Value`` field holding one value (regular views in Redis, enrichment lookups)."""
    list_field: str
    """Feast ``Value`` field holding a sequence of them (what a sequence feature is served as)."""
    null_default: Any
    """What a null becomes: Feast's default for a None inside a list, so lists stay aligned."""
    numpy_dtype: Any
    """Element type of a ``SequenceBatch`` column (``object`` keeps strings and bytes as Python)."""
    arrow_type: pa.DataType
    """One value in Arrow (timestamps: whole seconds, as served)."""
    arrow_accepts: Tuple[Callable[[pa.DataType], bool], ...]
    """Arrow types a pushed column may have before its exact cast; empty: it takes its own path."""
    spark_type_name: str
    """Spark SQL type of one value in a sequence (timestamps: whole seconds)."""
    ge_types: Tuple[str, ...]
    """pandas dtype names Great Expectations accepts for an event column of this type."""
    filter_types: Tuple[type, ...]
    """Python types a use case filter may compare a field of this type with."""
    ordered: bool
    """Whether ``<``, ``<=``, ``>``, ``>=`` filters apply (else ``==``, ``!=``, ``in``, ``not in``)."""
    int_range: Optional[Tuple[int, int]] = None
    """Inclusive bounds of an integer type, None for the others."""
    key_prefix: Optional[bytes] = None
    """Type letter of a join key value in entity key bytes; None: not allowed as a join key."""
    key_types: Tuple[type, ...] = ()
    """Python types an online request may give for a join key of this type."""


_T = FieldDescriptorProto


def _element(value_type: ValueType, feast_type: PrimitiveFeastType, **form: Any) -> ElementType:
    return ElementType(value_type=value_type, feast_type=feast_type, **form)


def _numeric(
    value_type: ValueType,
    feast_type: PrimitiveFeastType,
    proto_type: int,
    wire_type: int,
    numpy_dtype: Any,
    arrow_type: pa.DataType,
    spark_type_name: str,
) -> ElementType:
    """INT32, INT64, FLOAT and DOUBLE: alike but for their width and kind. Integers are bounded and
    may be join keys (type letter ``i``)."""
    name = value_type.name.lower()
    integer: Dict[str, Any] = {}
    if np.issubdtype(numpy_dtype, np.integer):
        low, high = np.iinfo(numpy_dtype).min, np.iinfo(numpy_dtype).max
        integer = dict(int_range=(int(low), int(high)), key_prefix=b"i", key_types=(int, np.integer))
    return _element(
        value_type, feast_type,
        proto_type=proto_type, wire_type=wire_type,
        value_field=f"{name}_val", list_field=f"{name}_list_val", null_default=0 if integer else 0.0,
        numpy_dtype=numpy_dtype, arrow_type=arrow_type, arrow_accepts=_NUMERIC,
        spark_type_name=spark_type_name, ge_types=_INT_GE_TYPES if integer else _FLOAT_GE_TYPES,
        filter_types=(int, float), ordered=True, **integer,
    )  # fmt: skip


#: Every element type an event field may have, by Feast value type.
ELEMENT_TYPES: Mapping[ValueType, ElementType] = {
    e.value_type: e
    for e in (
        _element(
            ValueType.STRING, PrimitiveFeastType.STRING,
            proto_type=_T.TYPE_STRING, wire_type=WIRE_LEN,
            value_field="string_val", list_field="string_list_val", null_default="",
            numpy_dtype=object, arrow_type=pa.string(),
            arrow_accepts=(pa.types.is_string, pa.types.is_large_string),
            spark_type_name="string", ge_types=("str", "string", "object"),
            filter_types=(str,), ordered=False, key_prefix=b"s", key_types=(str,),
        ),
        _element(
            ValueType.BYTES, PrimitiveFeastType.BYTES,
            proto_type=_T.TYPE_BYTES, wire_type=WIRE_LEN,
            value_field="bytes_val", list_field="bytes_list_val", null_default=b"",
            numpy_dtype=object, arrow_type=pa.binary(),
            arrow_accepts=(pa.types.is_binary, pa.types.is_large_binary),
            spark_type_name="binary", ge_types=("bytes", "object"),
            filter_types=(bytes,), ordered=False, key_prefix=b"b", key_types=(bytes,),
        ),
        _numeric(
            ValueType.INT32, PrimitiveFeastType.INT32, _T.TYPE_SINT32, WIRE_VARINT, np.int32, pa.int32(), "integer"
        ),
        _numeric(
            ValueType.INT64, PrimitiveFeastType.INT64, _T.TYPE_SINT64, WIRE_VARINT, np.int64, pa.int64(), "long"
        ),
        _numeric(
            ValueType.FLOAT, PrimitiveFeastType.FLOAT32, _T.TYPE_FLOAT, WIRE_I32, np.float32, pa.float32(), "float"
        ),
        _numeric(
            ValueType.DOUBLE, PrimitiveFeastType.FLOAT64, _T.TYPE_DOUBLE, WIRE_I64, np.float64, pa.float64(), "double"
        ),
        _element(
            ValueType.BOOL, PrimitiveFeastType.BOOL,
            proto_type=_T.TYPE_BOOL, wire_type=WIRE_VARINT,
            value_field="bool_val", list_field="bool_list_val", null_default=False,
            numpy_dtype=np.bool_, arrow_type=pa.bool_(), arrow_accepts=(pa.types.is_boolean,),
            spark_type_name="boolean", ge_types=("bool", "boolean"),
            filter_types=(bool,), ordered=False,
        ),
        _element(
            # Whole seconds, as Feast's UnixTimestamp serves them; pushed columns are parsed as times
            # (conversion.timestamps_to_us), hence no arrow_accepts.
            ValueType.UNIX_TIMESTAMP, PrimitiveFeastType.UNIX_TIMESTAMP,
            proto_type=_T.TYPE_SINT64, wire_type=WIRE_VARINT,
            value_field="unix_timestamp_val", list_field="unix_timestamp_list_val",
            # A Python int: Feast's constant is numpy's int64, whose zigzag encoding overflows.
            null_default=int(NULL_TIMESTAMP_INT_VALUE),
            numpy_dtype=np.int64, arrow_type=pa.int64(), arrow_accepts=(),
            spark_type_name="long",
            ge_types=("datetime64[ns, UTC]", "datetime64[us, UTC]", "datetime64[ns]", "datetime64[us]"),
            filter_types=(int,), ordered=True,
        ),
    )
}  # fmt: skip

#: Element types an event field may have, and the Feast list type a sequence of them is served as.
EVENT_FIELD_TYPES: Mapping[PrimitiveFeastType, ValueType] = {e.feast_type: t for t, e in ELEMENT_TYPES.items()}
#: The element types a join key may have, by value type.
KEY_TYPES: Mapping[ValueType, ElementType] = {t: e for t, e in ELEMENT_TYPES.items() if e.key_prefix is not None}


def element_value_type(view_name: str, field_name: str, dtype: FeastType) -> ValueType:
    """The value type of one event's value for a field declared with ``dtype`` (scalar or Array)."""
    base = dtype.base_type if isinstance(dtype, Array) else dtype
    if isinstance(base, PrimitiveFeastType) and base in EVENT_FIELD_TYPES:
        return EVENT_FIELD_TYPES[base]
    allowed = ", ".join(sorted(t.name.title() for t in EVENT_FIELD_TYPES))
    raise SequenceDefinitionError(
        f"Sequence view '{view_name}': field {field_name!r} has type {dtype}; event fields must be one of {allowed}."
    )
