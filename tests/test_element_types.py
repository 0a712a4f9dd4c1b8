"""The element type table: complete, and each type's forms agree with each other. Pure, no network."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import PrimitiveFeastType
from feast.value_type import ValueType

from feast_sequence.definitions.element_types import ELEMENT_TYPES, EVENT_FIELD_TYPES, KEY_TYPES
from feast_sequence.definitions.settings import EventField
from feast_sequence.offline import historical
from feast_sequence.serving import batch, featurize
from feast_sequence.storage import codec, conversion, entity_keys, lookup
from feast_sequence.transformations import streaming
from feast_sequence.validations import event_source

#: One non-null value of every type, near an edge of its range where it has one.
SAMPLES: Dict[ValueType, Any] = {
    ValueType.STRING: "ü\x00x",
    ValueType.BYTES: b"\x00\xff",
    ValueType.INT32: -(2**31),
    ValueType.INT64: 2**63 - 1,
    ValueType.FLOAT: -1.5,
    ValueType.DOUBLE: 2.0**-1074,
    ValueType.BOOL: True,
    ValueType.UNIX_TIMESTAMP: 1_700_000_000,
}
TYPES = list(ELEMENT_TYPES)


def test_every_event_field_type_has_one_entry():
    assert set(ELEMENT_TYPES) == set(SAMPLES)
    assert all(t == e.value_type for t, e in ELEMENT_TYPES.items())
    assert set(EVENT_FIELD_TYPES) == {e.feast_type for e in ELEMENT_TYPES.values()}
    assert all(isinstance(e.feast_type, PrimitiveFeastType) for e in ELEMENT_TYPES.values())
    assert set(KEY_TYPES) == {ValueType.STRING, ValueType.BYTES, ValueType.INT32, ValueType.INT64}


def test_derived_mappings_cover_every_type():
    for derived in (
        codec._ELEMENT_FORMAT,
        codec.NULL_DEFAULTS,
        conversion.ARROW_ELEMENT,
        lookup.VALUE_FIELD,
        batch.NUMPY_DTYPE,
        featurize.PAD_VALUES,
        historical._SPARK_ELEMENT,
        event_source._TYPES,
    ):
        assert set(derived) == set(ELEMENT_TYPES)
    # Timestamps are parsed as times, not cast: every other type has a cast target.
    assert set(conversion._ACCEPTS) == set(ELEMENT_TYPES) - {ValueType.UNIX_TIMESTAMP}


@pytest.mark.parametrize("value_type", TYPES, ids=lambda t: t.name)
def test_feast_value_fields_hold_the_type(value_type):
    element = ELEMENT_TYPES[value_type]
    sample = SAMPLES[value_type]
    single = ValueProto(**{element.value_field: sample})
    assert getattr(single, element.value_field) == sample
    listed = ValueProto(**{element.list_field: {"val": [sample, element.null_default]}})
    assert list(getattr(listed, element.list_field).val) == [sample, element.null_default]


@pytest.mark.parametrize("value_type", TYPES, ids=lambda t: t.name)
def test_codec_round_trip(value_type):
    element = ELEMENT_TYPES[value_type]
    sample = SAMPLES[value_type]
    layout = codec._layout((EventField("v", value_type),), ())
    members, _ = codec.encode_columns(layout, [[sample, element.null_default]], [2_000_000, 1_000_000])
    _, values = codec.decode_sequence(layout, members, codec.decode_plan(layout, [("v", 0)]))
    assert values["v"].WhichOneof("val") == element.list_field
    assert list(getattr(values["v"], element.list_field).val) == [sample, element.null_default]
    columns, times = codec.decode_members(layout, members)
    assert columns == [[sample, element.null_default]] and times == [2_000_000, 1_000_000]


@pytest.mark.parametrize("value_type", TYPES, ids=lambda t: t.name)
def test_arrow_and_numpy_forms(value_type):
    element = ELEMENT_TYPES[value_type]
    sample = SAMPLES[value_type]
    array = pa.array([sample, None], type=element.arrow_type)
    assert array.to_pylist() == [sample, None]
    if element.arrow_accepts:  # what a push converts: nulls become the null default
        assert any(check(array.type) for check in element.arrow_accepts)
        assert conversion.column_values("v", value_type, array) == [sample, element.null_default]
    column = batch.as_array([sample, element.null_default], value_type)
    assert column.dtype == np.dtype(element.numpy_dtype)
    assert column.tolist() == [sample, element.null_default]


@pytest.mark.parametrize("value_type", TYPES, ids=lambda t: t.name)
def test_spark_and_great_expectations_names(value_type):
    from pyspark.sql import types as T

    element = ELEMENT_TYPES[value_type]
    field = {"name": "v", "type": element.spark_type_name, "nullable": True, "metadata": {}}
    parsed = T.StructType.fromJson({"type": "struct", "fields": [field]})
    expected = {
        pa.string(): T.StringType(),
        pa.binary(): T.BinaryType(),
        pa.int32(): T.IntegerType(),
        pa.int64(): T.LongType(),
        pa.float32(): T.FloatType(),
        pa.float64(): T.DoubleType(),
        pa.bool_(): T.BooleanType(),
    }[element.arrow_type]
    assert parsed["v"].dataType == expected  # Spark and Arrow agree on the stored element
    sample = SAMPLES[value_type]
    if value_type == ValueType.UNIX_TIMESTAMP:
        frame_column = pd.Series(pd.to_datetime([sample], unit="s", utc=True))
    else:
        frame_column = pd.Series([sample], dtype=element.numpy_dtype)
    assert str(frame_column.dtype) in element.ge_types


def test_streaming_reads_timestamps_as_spark_timestamps():
    from pyspark.sql import types as T

    assert streaming._spark_type_name(ValueType.UNIX_TIMESTAMP) == "timestamp"
    assert streaming._spark_type_name(ValueType.INT32) == "integer"
    assert (
        T.StructType.fromJson(
            {
                "type": "struct",
                "fields": [{"name": "t", "type": "timestamp", "nullable": True, "metadata": {}}],
            }
        )["t"].dataType
        == T.TimestampType()
    )


@pytest.mark.parametrize("value_type", TYPES, ids=lambda t: t.name)
def test_filter_types_and_ranges(value_type):
    element = ELEMENT_TYPES[value_type]
    assert isinstance(SAMPLES[value_type], element.filter_types)
    if element.int_range is not None:
        low, high = element.int_range
        info = np.iinfo(element.numpy_dtype)
        assert (low, high) == (int(info.min), int(info.max))


@pytest.mark.parametrize("value_type", list(KEY_TYPES), ids=lambda t: t.name)
def test_key_types_encode_entity_keys(value_type):
    element = KEY_TYPES[value_type]
    sample = SAMPLES[value_type]
    assert isinstance(sample, element.key_types)
    key = entity_keys.entity_key_bytes([("k", value_type, sample)])
    assert key.startswith(element.key_prefix)
    from_proto = entity_keys.entity_key_bytes_from_values({"k": ValueProto(**{element.value_field: sample})})
    assert from_proto == key
