"""SequenceFeatureView definitions: validation, and settings that survive the registry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from feast import FeatureStore, FeatureView, Field, ValueType
from feast.types import Array, Int32, Int64, String, UnixTimestamp

import feast_sequence
from feast_sequence import (
    MAX_LENGTH_CAP,
    SequenceDefinitionError,
    is_sequence_view,
    sequence_settings,
)

from repos import click_view, push_source, user


@pytest.mark.parametrize("bad", [0, -1, MAX_LENGTH_CAP + 1, 2.5, "10", True, None])
def test_max_length_must_be_a_positive_int_under_the_cap(bad):
    with pytest.raises(
        SequenceDefinitionError,
        match=rf"'clicks': max_length={bad!r} is invalid; use an integer from 1 to {MAX_LENGTH_CAP}",
    ):
        click_view(max_length=bad)


def test_dedup_by_unknown_field_lists_the_valid_ones():
    with pytest.raises(SequenceDefinitionError, match=r"dedup_by names unknown field 'price'; valid fields: item, n"):
        click_view(dedup_by=["price"])


def test_dedup_by_must_be_a_list():
    with pytest.raises(SequenceDefinitionError, match=r"dedup_by='item' must be a list"):
        click_view(dedup_by="item")


@pytest.mark.parametrize("name", ["ts", "user_id", "__hidden"])
def test_reserved_field_names_are_rejected(name):
    with pytest.raises(SequenceDefinitionError, match=rf"field name {name!r} is reserved"):
        click_view(schema=[Field(name=name, dtype=String)])


def test_reserved_tag_prefix_is_rejected():
    with pytest.raises(SequenceDefinitionError, match=r"reserved prefix 'feast_sequence.'"):
        click_view(tags={"feast_sequence.max_length": "3"})


def test_source_without_timestamp_field_is_rejected():
    with pytest.raises(SequenceDefinitionError, match=r"source 'clicks_push' has no timestamp field"):
        click_view(source=push_source("clicks", timestamp_field=""))


def test_unsupported_field_type_is_rejected():
    with pytest.raises(
        SequenceDefinitionError, match=r"field .tags. has type Array\(String\); event fields must be scalars"
    ):
        click_view(schema=[Field(name="tags", dtype=Array(String))])


def test_served_schema_is_lists_plus_the_timestamp_field():
    v = click_view()
    assert {f.name: f.dtype for f in v.features} == {
        "item": Array(String),
        "n": Array(Int32),
        "ts": Array(UnixTimestamp),
    }


def test_settings_survive_the_registry_round_trip(make_store):
    store = make_store([user, click_view(dedup_by=["item"], ttl=timedelta(hours=2), max_length=7)])
    fresh = FeatureStore(repo_path=str(store.repo_path))
    reloaded = fresh.get_feature_view("clicks")
    assert type(reloaded) is FeatureView and is_sequence_view(reloaded)
    settings = sequence_settings(reloaded)
    assert settings == sequence_settings(FeatureView.from_proto(reloaded.to_proto()))
    assert settings.max_length == 7
    assert settings.dedup_by == ("item",)
    assert settings.ttl_us == 7200 * 1_000_000
    assert settings.timestamp_field == "ts"
    assert settings.join_keys == (("user_id", ValueType.INT64),)
    assert [(f.name, f.value_type) for f in settings.fields] == [
        ("item", ValueType.STRING),
        ("n", ValueType.INT32),
    ]


def test_reapply_is_idempotent(make_store):
    store = make_store([user, click_view()])
    store.apply([user, click_view()])
    assert sequence_settings(store.get_feature_view("clicks")).max_length == 10


def test_plain_view_is_not_a_sequence():
    plain = FeatureView(
        name="plain", entities=[user], schema=[Field(name="x", dtype=Int64)], source=push_source("clicks")
    )
    assert not is_sequence_view(plain)
    with pytest.raises(SequenceDefinitionError, match=r"Feature view 'plain' is not a sequence view"):
        sequence_settings(plain)


def test_corrupt_tags_are_reported_at_apply(make_store):
    broken = click_view()
    broken.tags["feast_sequence.max_length"] = "0"
    with pytest.raises(SequenceDefinitionError, match=r"max_length=0 is invalid"):
        make_store([user, broken])


def test_public_api_is_sorted_and_complete():
    import types

    assert feast_sequence.__all__ == sorted(feast_sequence.__all__)
    public = {  # dir(): the public names are imported on first use (feast_sequence/__init__.py)
        name
        for name in dir(feast_sequence)
        if not name.startswith("_") and not isinstance(getattr(feast_sequence, name), types.ModuleType)
    }
    assert public == set(feast_sequence.__all__)
