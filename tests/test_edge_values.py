"""Edge values at the input boundary (issue 11): numeric epochs given as timestamps, times a Redis
score cannot hold exactly, Float32 overflow and integer rounding, text Redis cannot store, integers
past Int64, and read keys of the wrong type. Each is refused with an error naming the column, row
or key and the value; nothing is written."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from feast_sequence import SequenceInputError, SequenceSpec, SequenceUseCase, sequence_settings
from feast_sequence.storage.append import encode_proto_rows
from feast_sequence.storage.conversion import MAX_EVENT_US, column_values, timestamps_to_us
from feast_sequence.storage.entity_keys import entity_column_bytes

from conftest import sequence_key_count
from sample_repo import events, objects

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
EPOCH_2024 = 1_704_067_200  # 2024-01-01T00:00:00Z in seconds


@pytest.fixture
def store(make_store, tmp_path):
    return make_store(objects(tmp_path / "events"))


def good(n: int = 2) -> pd.DataFrame:
    return events([(k, f"i{k}", k, 1.0, True, T0 + timedelta(minutes=k)) for k in range(n)])


def with_value(column: str, value: object, dtype: object = object) -> pd.DataFrame:
    df = good().astype({column: dtype})
    df.loc[1, column] = value
    return df


# --- case 8: numeric epochs are not timestamps ----------------------------------------------------

EPOCH_COLUMNS = {
    "int64": (pd.Series([EPOCH_2024, EPOCH_2024 + 1]), 0, EPOCH_2024),
    "float64": (pd.Series([EPOCH_2024 + 0.5]), 0, EPOCH_2024 + 0.5),
    "python ints": (pd.Series([T0, EPOCH_2024], dtype=object), 1, EPOCH_2024),
    "numpy int": (pd.Series(["2024-01-01", np.int64(EPOCH_2024)], dtype=object), 1, EPOCH_2024),
    "after a null": (pd.Series([np.nan, float(EPOCH_2024)]), 1, float(EPOCH_2024)),
}


@pytest.mark.parametrize("case", sorted(EPOCH_COLUMNS))
def test_numeric_epoch_timestamps_are_refused(case):
    series, row, value = EPOCH_COLUMNS[case]
    with pytest.raises(SequenceInputError) as raised:
        timestamps_to_us("ts", series)
    message = str(raised.value)
    assert f"Column 'ts', row {row} (index {row}): value {value!r} " in message
    assert 'pd.to_datetime(col, unit="s")' in message


def test_numeric_epoch_in_a_unix_timestamp_field_is_refused():
    with pytest.raises(SequenceInputError, match=r"Column 'seen', row 0 .* 1704067200 .*unit="):
        column_values("seen", ValueType.UNIX_TIMESTAMP, pd.Series([EPOCH_2024, None], dtype=object))


def test_dates_as_text_and_datetimes_stay_accepted():
    series = pd.Series(["2024-01-01T00:00:00Z", T0, pd.Timestamp(T0)], dtype=object)
    assert timestamps_to_us("ts", series).tolist() == [EPOCH_2024 * 1_000_000] * 3


def test_pushed_epoch_seconds_are_refused(store, redis_client):
    df = good().assign(ts=[EPOCH_2024, EPOCH_2024 + 60])
    with pytest.raises(SequenceInputError, match=r"Column 'ts', row 0 .* 1704067200 .*unit=\"s\""):
        store.push("clicks_push", df)
    assert sequence_key_count(redis_client) == 0


# --- case 9a: event times a sorted-set score holds exactly ----------------------------------------

LAST_EXACT = pd.Timestamp(2**53 - 1, unit="us", tz="UTC")


def test_the_latest_event_time_is_the_last_exact_score():
    assert MAX_EVENT_US == 2**53 - 1
    assert str(LAST_EXACT) == "2255-06-05 23:47:34.740991+00:00"
    assert float(MAX_EVENT_US) == MAX_EVENT_US and float(MAX_EVENT_US + 1) == float(MAX_EVENT_US + 2)


def test_event_times_past_the_last_exact_score_are_refused():
    series = pd.Series([LAST_EXACT, LAST_EXACT + pd.Timedelta(microseconds=1)])
    with pytest.raises(SequenceInputError, match=r"Column 'ts', row 1 .* outside 1970-01-01 .. 2255-06-05"):
        timestamps_to_us("ts", series)


def test_the_last_exact_event_time_is_stored_to_the_microsecond(store, redis_client):
    store.push("clicks_push", good(1).assign(ts=[LAST_EXACT]))
    keys = list(redis_client.scan_iter(b"fsq:*}:z"))  # one per view of clicks_push
    scores = [s for k in keys for _, s in redis_client.zrange(k, 0, -1, withscores=True)]
    assert len(scores) == 3 and {int(s) for s in scores} == {2**53 - 1}
    with pytest.raises(SequenceInputError, match=r"outside 1970-01-01 .. 2255-06-05"):
        store.push("clicks_push", good(1).assign(ts=[LAST_EXACT + pd.Timedelta(microseconds=1)]))


def test_materialized_event_times_past_the_limit_are_refused(store):
    settings = sequence_settings(store.get_feature_view("clicks"))
    key = EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(int64_val=1)])
    late = datetime(2256, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(SequenceInputError, match=r"row 0 .* outside 1970-01-01 .. 2255-06-05"):
        encode_proto_rows(settings, [(key, {"item": ValueProto(string_val="a")}, late, None)])


# --- case 9b: Float32 overflow and integers Float32 cannot hold ------------------------------------

FLOAT32_REFUSED = {
    "overflow": (pd.Series([1.0, 1e39]), 1, 1e39),
    "negative overflow": (pd.Series([-1e39]), 0, -1e39),
    "integral float past 2**24": (pd.Series([16777216.0, 16777217.0]), 1, 16777217.0),
    "python int past 2**24": (pd.Series([1.5, 16777217], dtype=object), 1, 16777217),
    "int column past 2**24": (pd.Series([16777217], dtype="int64"), 0, 16777217),
}


@pytest.mark.parametrize("case", sorted(FLOAT32_REFUSED))
def test_float32_values_that_do_not_survive_are_refused(case):
    series, row, value = FLOAT32_REFUSED[case]
    with pytest.raises(SequenceInputError) as raised:
        column_values("score", ValueType.FLOAT, series)
    assert f"Column 'score', row {row} (index {row}): value {value!r} cannot be converted to FLOAT" in str(raised.value)


def test_float32_keeps_rounding_fractions_and_explicit_infinities():
    series = pd.Series([0.1, 16777216.0, 3.4028234663852886e38, math.inf, -math.inf, math.nan])
    values = column_values("score", ValueType.FLOAT, series)
    assert values[:5] == [float(np.float32(0.1)), 16777216.0, 3.4028234663852886e38, math.inf, -math.inf]
    assert values[5] == 0.0  # NaN is a null in pandas: the type's default, as before


# --- case 11a: text Redis cannot store, integers past Int64 ---------------------------------------

UNCONVERTIBLE = {
    "lone surrogate": (ValueType.STRING, pd.Series(["x", "a\ud800"]), "STRING"),
    "int64 overflow": (ValueType.INT64, pd.Series([1, 2**63], dtype=object), "INT64"),
    "int64 overflow, uint64 column": (ValueType.INT64, pd.Series([1, 2**63]), "INT64"),
    "int64 underflow": (ValueType.INT64, pd.Series([1, -(2**63) - 1], dtype=object), "INT64"),
    "int32 from past int64": (ValueType.INT32, pd.Series([1, 2**64], dtype=object), "INT32"),
}


@pytest.mark.parametrize("case", sorted(UNCONVERTIBLE))
def test_unconvertible_values_name_column_and_row(case):
    value_type, series, type_name = UNCONVERTIBLE[case]
    with pytest.raises(SequenceInputError, match=rf"Column 'x', row 1 \(index 1\): value .* {type_name}"):
        column_values("x", value_type, series)


@pytest.mark.parametrize(
    "value_type, value", [(ValueType.STRING, "a\ud800"), (ValueType.INT64, 2**63)], ids=["surrogate", "2**63"]
)
def test_unconvertible_join_keys_name_column_and_row(value_type, value):
    df = pd.DataFrame({"k": pd.Series([value, value], dtype=object)})
    with pytest.raises(SequenceInputError, match=r"Column 'k', row 0 \(index 0\): value .* cannot be"):
        entity_column_bytes([("k", value_type)], df)


PUSHED = {
    "surrogate in a field": ("clicks_push", lambda: with_value("item", "a\ud800"), "item"),
    "2**63 in an Int32 field": ("clicks_push", lambda: with_value("n", 2**63), "n"),
    "2**63 as an Int64 join key": ("clicks_push", lambda: with_value("user_id", 2**63), "user_id"),
    "surrogate in a String join key": (
        "pages_push",
        lambda: pd.DataFrame(
            {
                "user_id": [1, 1],
                "session_id": ["s", "s\udfff"],
                "page": ["p", "q"],
                "ts": [T0, T0 + timedelta(seconds=1)],
            }
        ),
        "session_id",
    ),
}


@pytest.mark.parametrize("case", sorted(PUSHED))
def test_pushed_unconvertible_values_are_refused(store, redis_client, case):
    source, make, column = PUSHED[case]
    message = rf"Column '{column}', row 1 \(index 1\): value .* cannot be"
    with pytest.raises(SequenceInputError, match=message):
        store.push(source, make())
    assert sequence_key_count(redis_client) == 0


# --- case 12: read keys of the wrong type --------------------------------------------------------

WRONG_KEYS = {
    "a fraction": (1.5, r"1\.5 \(float\)"),
    "a bool": (True, r"True \(bool\)"),
    "text": ("1", r"'1' \(str\)"),
    "null": (None, r"None"),
    "past int64": (2**63, r"9223372036854775808 \(int\)"),
}


@pytest.fixture
def served(store):
    store.push("clicks_push", good(2))
    return store


def _expected(pattern: str) -> str:
    return rf"Join key 'user_id' .*row 1.*{pattern}.*expects int"


@pytest.mark.parametrize("case", sorted(WRONG_KEYS))
def test_read_keys_of_the_wrong_type_are_refused(served, case):
    value, pattern = WRONG_KEYS[case]
    with pytest.raises(SequenceInputError, match=_expected(pattern)):
        served.get_online_features(features=["clicks:item"], entity_rows=[{"user_id": 0}, {"user_id": value}])


@pytest.mark.parametrize("case", sorted(WRONG_KEYS))
def test_columnar_read_keys_of_the_wrong_type_are_refused(served, case):
    value, pattern = WRONG_KEYS[case]
    with pytest.raises(SequenceInputError, match=_expected(pattern)):
        served.get_online_features(features=["clicks:item", "profile:scores"], entity_rows={"user_id": [0, value]})


def test_wrong_read_keys_are_refused_for_feature_services_and_async(served):
    rows = [{"user_id": 0}, {"user_id": 1.5}]
    with pytest.raises(SequenceInputError, match=_expected(r"1\.5")):
        served.get_online_features(features=served.get_feature_service("click_service"), entity_rows=rows)

    async def read_async() -> None:
        await served.get_online_features_async(features=["clicks:item"], entity_rows=rows)

    with pytest.raises(SequenceInputError, match=_expected(r"1\.5")):
        asyncio.run(read_async())


def test_wrong_read_keys_are_refused_for_use_cases(served):
    clicks = served.get_feature_view("clicks")
    recent = SequenceUseCase(name="recent", features=[clicks[["item"]]], sequences={"clicks": SequenceSpec(length=2)})
    served.apply([recent])
    service = served.get_feature_service("recent")
    rows = [{"user_id": 0}, {"user_id": "1"}]
    with pytest.raises(SequenceInputError, match=_expected(r"'1' \(str\)")):
        served.get_online_features(features=service, entity_rows=rows)

    async def read_async() -> None:
        await served.get_online_features_async(features=service, entity_rows=rows)

    with pytest.raises(SequenceInputError, match=_expected(r"'1' \(str\)")):
        asyncio.run(read_async())


def test_read_keys_of_the_right_type_are_served(served):
    rows = [{"user_id": 0}, {"user_id": np.int64(1)}, {"user_id": 5}]
    assert served.get_online_features(features=["clicks:item"], entity_rows=rows).to_dict()["item"] == [
        ["i0"],
        ["i1"],
        [],
    ]


def test_regular_views_keep_feasts_key_conversion(served):
    # Only sequence views' join keys are checked: a regular view reads 1.5 as Feast does.
    out = served.get_online_features(features=["profile:scores"], entity_rows=[{"user_id": 1.5}]).to_dict()
    assert out["scores"] == [None]
