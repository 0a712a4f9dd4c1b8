"""Event encoding and decoding, entity keys and input conversion: pure logic, no network."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from every_type import FIELDS
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from feast_sequence import SequenceInputError
from feast_sequence.definitions.settings import EventField
from feast_sequence.storage.codec import _layout, decode_plan, decode_sequence, encode_columns
from feast_sequence.storage.conversion import column_values
from feast_sequence.storage.entity_keys import entity_column_bytes, entity_key_bytes_from_proto


def test_concatenated_events_decode_as_columns():
    layout = _layout(FIELDS, ())
    columns = [
        ["x", "ü"],
        [b"\x00", b""],
        [-5, 2**31 - 1],
        [-(2**63), 7],
        [1.5, -0.25],
        [math.pi, 0.0],
        [True, False],
        [0, 1_700_000_000],
    ]
    members, identities = encode_columns(layout, columns, [1_500_000, 3_000_000])
    assert identities is None  # without dedup_by the identity is the whole member
    requested = [(f.name, i) for i, f in enumerate(FIELDS)] + [("ts", -1)]
    newest, values = decode_sequence(layout, [members[1], members[0]], decode_plan(layout, requested))
    assert list(values["s"].string_list_val.val) == ["ü", "x"]
    assert list(values["b"].bytes_list_val.val) == [b"", b"\x00"]
    assert list(values["i32"].int32_list_val.val) == [2**31 - 1, -5]
    assert list(values["i64"].int64_list_val.val) == [7, -(2**63)]
    assert list(values["f"].float_list_val.val) == [-0.25, 1.5]
    assert list(values["d"].double_list_val.val) == [0.0, math.pi]
    assert list(values["ok"].bool_list_val.val) == [False, True]
    assert list(values["when"].unix_timestamp_list_val.val) == [1_700_000_000, 0]
    assert list(values["ts"].unix_timestamp_list_val.val) == [3, 1]
    assert newest.timestamp() == 3


def test_empty_sequence_gives_empty_lists_not_nulls():
    layout = _layout(FIELDS[:1], ())
    newest, values = decode_sequence(layout, [], decode_plan(layout, [("s", 0)]))
    assert newest is None and values["s"].WhichOneof("val") == "string_list_val"


def test_identity_is_the_dedup_fields_and_sub_second_times_stay_distinct():
    layout = _layout(FIELDS[:3], (2, 0))
    members, identities = encode_columns(layout, [["a", "a"], [b"", b"x"], [1, 1]], [1, 2])
    assert identities[0] == identities[1] and members[0] != members[1]
    assert all(m.startswith(i) for m, i in zip(members, identities))
    _, values = decode_sequence(layout, members, decode_plan(layout, [("s", 0), ("b", 1), ("i32", 2)]))
    assert list(values["s"].string_list_val.val) == ["a", "a"]  # reordered fields parse the same
    assert list(values["b"].bytes_list_val.val) == [b"", b"x"]
    plain = _layout(FIELDS[:1], ())
    same_second, _ = encode_columns(plain, [["a", "a"]], [1_000_000, 1_000_001])
    assert same_second[0] != same_second[1]


def test_entity_key_bytes_agree_between_columns_and_protos():
    df = pd.DataFrame({"b_key": ["x", "y"], "a_key": [1, 2]})
    from_columns = entity_column_bytes([("b_key", ValueType.STRING), ("a_key", ValueType.INT64)], df)
    proto = EntityKeyProto(
        join_keys=["b_key", "a_key"], entity_values=[ValueProto(string_val="y"), ValueProto(int64_val=2)]
    )
    assert entity_key_bytes_from_proto(proto) == from_columns[1]
    assert from_columns[0] != from_columns[1] and not from_columns[0].startswith(b"}")


def test_floats_that_are_whole_convert_to_ints_and_others_are_rejected():
    assert column_values("n", ValueType.INT32, pd.Series([1.0, None, 3.0])) == [1, 0, 3]
    with pytest.raises(
        SequenceInputError, match=r"Column 'n', row 1 \(index 1\): value 2.5 cannot be converted to INT32"
    ):
        column_values("n", ValueType.INT32, pd.Series([1.0, 2.5]))


def test_strings_are_not_silently_coerced():
    with pytest.raises(
        SequenceInputError, match=r"Column 's', row 0 \(index 0\): value 5 cannot be converted to STRING"
    ):
        column_values("s", ValueType.STRING, pd.Series([5, "a"], dtype=object))


@pytest.mark.parametrize(
    "key_type, field, keys",
    [
        (ValueType.STRING, "string_val", ["a", "", "é-85123A", "x" * 300]),
        (ValueType.INT64, "int64_val", [0, -1, 2**40, 2**63 - 1]),
        (ValueType.INT32, "int32_val", [0, -7, 2**31 - 1]),
        (ValueType.BYTES, "bytes_val", [b"", b"\x00\xff"]),
    ],
)
def test_enrichment_lookup_keys_match_feasts_serialization(key_type, field, keys):
    """Lookups build Feast's v3 entity keys directly; they must equal serialize_entity_key's."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    from feast_sequence.definitions.enrichment import Enrichment
    from feast_sequence.storage.lookup import lookup_commands

    enrichment = Enrichment("item", "item_id", key_type, "item_id", (("price", ValueType.FLOAT),))
    commands = lookup_commands(enrichment, "proj", 3, keys, one_call_per_key=True)
    for key, command in zip(keys, commands):
        proto = EntityKeyProto(join_keys=["item_id"], entity_values=[ValueProto(**{field: key})])
        assert command[1] == serialize_entity_key(proto, entity_key_serialization_version=3) + b"proj"


def test_enrichment_lookup_replies_decode_per_feature_with_nulls_and_misses():
    from feast_sequence.definitions.enrichment import Enrichment
    from feast_sequence.storage.lookup import decode_lookup

    enrichment = Enrichment(
        "item",
        "item_id",
        ValueType.STRING,
        "item_id",
        (("title", ValueType.STRING), ("cost", ValueType.DOUBLE)),
    )
    title = lambda s: ValueProto(string_val=s).SerializeToString()  # noqa: E731
    cost = lambda c: ValueProto(double_val=c).SerializeToString()  # noqa: E731
    keys = ["a", "b", "c", "d"]
    # Script replies come flat (one list per call); HMGET replies one list per key: same result.
    flat = [title("A"), cost(1.5), None, None, title(""), None, title("D"), ValueProto().SerializeToString()]
    per_key = [flat[i : i + 2] for i in range(0, 8, 2)]
    for replies in ([flat], per_key):
        found, misses = decode_lookup(enrichment, keys, replies)
        assert found == {"a": ("A", 1.5), "c": ("", 0.0), "d": ("D", 0.0)} and misses == 1
    # A value stored with another type falls back to per-value decoding for that feature.
    found, _ = decode_lookup(enrichment, ["a"], [[title("A"), ValueProto(int64_val=3).SerializeToString()]])
    assert found == {"a": ("A", 3)}


def test_a_null_timestamp_field_is_stored_as_feasts_null_timestamp():
    """Regression: the null default was numpy's int64, whose zigzag overflowed; -64 was stored."""
    from datetime import datetime, timezone

    from feast.type_map import NULL_TIMESTAMP_INT_VALUE

    from feast_sequence.definitions.settings import SequenceSettings
    from feast_sequence.storage.append import encode_proto_rows
    from feast_sequence.storage.codec import layout_for

    settings = SequenceSettings(
        view_name="v",
        join_keys=(("k", ValueType.INT64),),
        fields=(EventField("when", ValueType.UNIX_TIMESTAMP),),
        timestamp_field="ts",
        max_length=10,
        dedup_by=(),
        ttl_us=None,
    )
    key = EntityKeyProto(join_keys=["k"], entity_values=[ValueProto(int64_val=1)])
    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    encoded = encode_proto_rows(settings, [(key, {"when": ValueProto()}, at, None)])
    layout = layout_for(settings)
    _, values = decode_sequence(layout, encoded.members, decode_plan(layout, [("when", 0)]))
    assert list(values["when"].unix_timestamp_list_val.val) == [NULL_TIMESTAMP_INT_VALUE]
