"""Bad input, as a matrix: definitions, feature_store.yaml, pushes and requests. Each case gets a
clear error that names the offending field, value or row, and nothing is written."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from feast import Field
from feast.repo_config import FeastConfigError
from feast.types import Array, String

import feast_sequence
from feast_sequence import (
    SequenceConfigurationError,
    SequenceDefinitionError,
    SequenceInputError,
    SequenceRequestError,
)

from conftest import sequence_key_count
from repos import applied_store, click_view, push_source, sequence_online, write_repo
from sample_repo import events, objects

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def definition(**overrides):
    return lambda: click_view(**overrides)


DEFINITIONS = {
    "max_length zero": (definition(max_length=0), r"max_length=0 is invalid"),
    "max_length over the cap": (definition(max_length=100_001), r"max_length=100001 is invalid"),
    "max_length a string": (definition(max_length="10"), r"max_length='10' is invalid"),
    "max_length a bool": (definition(max_length=True), r"max_length=True is invalid"),
    "dedup_by unknown field": (definition(dedup_by=["price"]), r"unknown field 'price'"),
    "dedup_by a string": (definition(dedup_by="item"), r"dedup_by='item' must be a list"),
    "dedup_by twice": (definition(dedup_by=["item", "item"]), r"names a field twice"),
    "field named like the timestamp": (
        definition(schema=[Field(name="ts", dtype=String)]),
        r"'ts' is reserved",
    ),
    "field named like a join key": (
        definition(schema=[Field(name="user_id", dtype=String)]),
        r"'user_id' is reserved",
    ),
    "field with a reserved prefix": (
        definition(schema=[Field(name="__x", dtype=String)]),
        r"'__x' is reserved",
    ),
    "field declared twice": (
        definition(schema=[Field(name="a", dtype=String), Field(name="a", dtype=String)]),
        r"'a' is declared twice",
    ),
    "list-typed event field": (definition(schema=[Field(name="a", dtype=Array(String))]), r"must be scalars"),
    "reserved tag": (definition(tags={"feast_sequence.max_length": "1"}), r"reserved prefix"),
    "source without timestamp": (
        definition(source=push_source("clicks", timestamp_field="")),
        r"has no timestamp field",
    ),
    "negative ttl": (definition(ttl=timedelta(seconds=-1)), r"ttl=.* must be a non-negative timedelta"),
    "empty schema": (definition(schema=[]), r"schema has no event fields"),
}


@pytest.mark.parametrize("case", sorted(DEFINITIONS))
def test_definitions(case):
    build, message = DEFINITIONS[case]
    with pytest.raises(SequenceDefinitionError, match=message):
        build()


def test_yaml_unknown_online_store_key(tmp_path, redis_server):
    from feast.repo_config import load_repo_config

    write_repo(tmp_path, "p", sequence_online(redis_server.connection_string, max_lenght=3))
    with pytest.raises(FeastConfigError, match="max_lenght"):
        load_repo_config(tmp_path, tmp_path / "feature_store.yaml")


def test_yaml_negative_retries(tmp_path, redis_server):
    from feast.repo_config import load_repo_config

    write_repo(tmp_path, "p", sequence_online(redis_server.connection_string, retries=-1))
    with pytest.raises(FeastConfigError, match="retries"):
        load_repo_config(tmp_path, tmp_path / "feature_store.yaml")


BAD_CONNECTION_STRINGS = {
    "port not a number": ("127.0.0.1:abc", r"'127\.0\.0\.1:abc'.*port 'abc' is not a number"),
    "empty": ("", r"connection_string='': .*host:port\[,host:port\]"),
    "no port": ("localhost", r"'localhost' lacks a port"),
    "no host": (":6379", r"':6379' lacks a host"),
    "port out of range": ("localhost:70000", r"port '70000' is not a number from 1 to 65535"),
    "unset environment variable": ("${NOT_SET}", r"an environment variable that is not set"),
    "timeout not a number": (
        "localhost:6379,socket_timeout=soon",
        r"socket_timeout='soon' is not a positive number of seconds",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONNECTION_STRINGS))
def test_yaml_bad_connection_string(tmp_path, case):
    from feast.repo_config import load_repo_config

    connection, message = BAD_CONNECTION_STRINGS[case]
    write_repo(tmp_path, "p", sequence_online(connection))
    with pytest.raises(FeastConfigError, match=message):
        load_repo_config(tmp_path, tmp_path / "feature_store.yaml")


def test_bad_connection_string_fails_when_the_store_is_built(tmp_path):
    from feast import FeatureStore

    write_repo(tmp_path, "p", sequence_online("127.0.0.1:abc"))
    with pytest.raises(FeastConfigError, match=r"expected host:port"):
        FeatureStore(repo_path=str(tmp_path))


def test_yaml_without_the_sequence_provider(tmp_path, redis_server):
    from feast import FeatureStore

    write_repo(tmp_path, "p", sequence_online(redis_server.connection_string), extra={"provider": "local"})
    with pytest.raises(SequenceConfigurationError, match="provider: feast_sequence.SequenceProvider"):
        FeatureStore(repo_path=str(tmp_path)).apply(objects(tmp_path / "events"))


@pytest.fixture
def store(make_store, tmp_path):
    return make_store(objects(tmp_path / "events"))


def good(n: int = 2) -> pd.DataFrame:
    return events([(k, f"i{k}", k, 1.0, True, T0 + timedelta(minutes=k)) for k in range(n)])


def with_value(column, value, dtype=object):
    df = good().astype({column: dtype})
    df.loc[1, column] = value
    return df


PUSHES = {
    "missing entity column": (lambda: good().drop(columns=["user_id"]), r"lacks column\(s\) \['user_id'\]"),
    # Feast itself selects the timestamp column first: its KeyError names it.
    "missing timestamp column": (lambda: good().drop(columns=["ts"]), r"'ts'"),
    "null entity key": (lambda: with_value("user_id", None), r"Column 'user_id', row 1 .* is null"),
    "null timestamp": (lambda: with_value("ts", None), r"Column 'ts', row 1 .* is null"),
    "unparseable timestamp": (
        lambda: with_value("ts", "yesterday"),
        r"Column 'ts', row 1 .* 'yesterday' is not a timestamp",
    ),
    "mixed zones": (
        lambda: with_value("ts", datetime(2024, 1, 1, 5)),
        r"Column 'ts', row 1 .* mixes zone-aware and naive timestamps",
    ),
    "timestamp before 1970": (
        lambda: with_value("ts", pd.Timestamp("1969-12-31", tz="UTC")),
        r"outside 1970-01-01",
    ),
    "absurd timestamp": (lambda: with_value("ts", "3000-01-01"), r"Column 'ts', row 1 .* not a timestamp"),
    "int from text": (
        lambda: with_value("n", "seven"),
        r"Column 'n', row 1 .* 'seven' cannot be converted to INT32",
    ),
    "int overflow": (lambda: with_value("n", 2**40), r"Column 'n', row 1 .* cannot be converted to INT32"),
    "int with a fraction": (
        lambda: with_value("n", 2.5),
        r"Column 'n', row 1 .* 2.5 cannot be converted to INT32",
    ),
    "string from a number": (
        lambda: with_value("item", 5),
        r"Column 'item', row 1 .* 5 cannot be converted to STRING",
    ),
    "bool from text": (
        lambda: with_value("flag", "yes"),
        r"Column 'flag', row 1 .* cannot be converted to BOOL",
    ),
    "float from text": (
        lambda: with_value("price", "cheap"),
        r"Column 'price', row 1 .* cannot be converted to DOUBLE",
    ),
    "entity key from a fraction": (
        lambda: with_value("user_id", 1.5),
        r"Column 'user_id', row 1 .* value 1.5 is a float; join key 'user_id' is INT64",
    ),
    "oversized value": (
        lambda: with_value("item", "x" * 70_000),
        r"row 1 encodes to 70,0\d\d bytes, over the limit",
    ),
}


@pytest.mark.parametrize("case", sorted(PUSHES))
def test_pushes_are_rejected_whole(store, redis_client, case):
    make, message = PUSHES[case]
    expected = KeyError if case == "missing timestamp column" else SequenceInputError
    with pytest.raises(expected, match=message):
        store.push("clicks_push", make())
    assert sequence_key_count(redis_client) == 0


@pytest.mark.parametrize("column", ["n", "ts"])
def test_feast_sequence_push_names_a_missing_column_and_the_view(store, redis_client, column):
    """``store.push`` raises pandas' bare KeyError for a missing feature column before the provider
    sees the frame (Feast's own check); ``feast_sequence.push`` names the column, view and push source."""
    message = rf"Push source 'clicks_push', view 'clicks': pushed data lacks column\(s\) \['{column}'\]"
    with pytest.raises(SequenceInputError, match=message):
        feast_sequence.push(store, "clicks_push", good().drop(columns=[column]))
    with pytest.raises(SequenceInputError, match=message):
        asyncio.run(feast_sequence.push_async(store, "clicks_push", good().drop(columns=[column])))
    assert sequence_key_count(redis_client) == 0


def test_oversized_batch_is_rejected_before_any_work(store, redis_client, monkeypatch):
    from feast_sequence.storage import append as _append

    monkeypatch.setattr(_append, "MAX_EVENTS_PER_BATCH", 3)
    with pytest.raises(SequenceInputError, match=r"a batch of 4 events exceeds the limit of 3"):
        store.push("clicks_push", good(4))
    assert sequence_key_count(redis_client) == 0


def test_unknown_push_source(store, redis_client):
    from feast.errors import PushSourceNotFoundException

    with pytest.raises(PushSourceNotFoundException, match="nope"):
        store.push("nope", good())
    assert sequence_key_count(redis_client) == 0


REQUESTS = {
    "unknown feature": (["clicks:colour"], [{"user_id": 1}], r"colour"),
    "unknown view": (["clickz:item"], [{"user_id": 1}], r"clickz"),
    "missing entity key": (["clicks:item"], [{"session_id": "s"}], r"user_id"),
}


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_requests(store, case):
    features, rows, message = REQUESTS[case]
    with pytest.raises(Exception, match=message):
        store.get_online_features(features=features, entity_rows=rows)


def test_too_many_entities_in_one_request(make_store, tmp_path, redis_server):
    repo = tmp_path / "limited"
    online = sequence_online(redis_server.connection_string, max_entities_per_request=3)
    store = applied_store(repo, "limited", online, objects(repo / "events"))
    store.get_online_features(features=["clicks:item"], entity_rows=[{"user_id": u} for u in range(3)])
    with pytest.raises(
        SequenceRequestError, match=r"4 entities of sequence view 'clicks' exceeds max_entities_per_request=3"
    ):
        store.get_online_features(features=["clicks:item"], entity_rows=[{"user_id": u} for u in range(4)])


def test_the_offline_push_check_names_missing_extra_and_unconvertible_columns():
    """Issue 22, case 8: what the offline store would refuse, found before anything is written."""
    import pyarrow as pa

    from feast_sequence.offline.push_check import offline_push_problem

    schema = pa.schema([("user_id", pa.int64()), ("n", pa.int32()), ("ts", pa.timestamp("us"))])
    frame = pd.DataFrame({"user_id": [1], "n": [2], "ts": [pd.Timestamp("2024-01-01", tz="UTC")]})
    assert offline_push_problem(schema, frame) is None
    assert offline_push_problem(schema, frame.drop(columns=["n"]).assign(x=1)) == (
        "columns do not match its offline source's: missing ['n'], extra ['x']"
    )
    problem = offline_push_problem(schema, frame.assign(n=["many"]))
    assert problem is not None and problem.startswith("column 'n' (object) does not convert to int32")
    assert "2147483648" in (offline_push_problem(schema, frame.assign(n=[2**31])) or "")


def test_a_pushed_integer_key_given_as_a_float_is_refused_as_reads_refuse_it():
    """Issue 22, case 9: 1.0 was stored under entity 1 while a read of 1.0 is refused."""
    from feast.value_type import ValueType

    from feast_sequence.storage.entity_keys import entity_column_bytes

    keys = [("user_id", ValueType.INT64)]
    for column in ([1.0, 2.0], [1, 2.0]):
        with pytest.raises(
            SequenceInputError, match=r"Column 'user_id', row \d \(index \d\): value .* is a float; .* INT64"
        ):
            entity_column_bytes(keys, pd.DataFrame({"user_id": column}))
    assert entity_column_bytes(keys, pd.DataFrame({"user_id": [1, 2]})) == [b"i\x011", b"i\x012"]


def test_online_requests_wrong_in_shape_are_refused_with_422_naming_the_problem():
    """Issue 22, case 9: Feast answers these with a bare IndexError, KeyError or ValueError (500)."""
    from feast_sequence.online.entity_rows import check_request_shape

    cases = {
        "No features requested": ([], [{"user_id": 1}]),
        r"No entity rows: 'entity_rows' is empty": (["clicks:n"], []),
        r"No entity rows: the entity columns \['user_id'\] are empty": (["clicks:n"], {"user_id": []}),
        r"Entity row 1 has keys \['uid'\], but row 0 has \['user_id'\]": (["clicks:n"], [{"user_id": 1}, {"uid": 2}]),
        r"Entity columns have different lengths \(user_id: 2, s: 1\)": (["clicks:n"], {"user_id": [1, 2], "s": [1]}),
    }
    for message, (features, rows) in cases.items():
        with pytest.raises(SequenceRequestError, match=message) as raised:
            check_request_shape(features, rows)
        assert raised.value.http_status_code() == 422
    check_request_shape(["clicks:n"], {"user_id": [1, 2]})
    check_request_shape(["clicks:n"], [{"user_id": 1}, {"user_id": 2}])
