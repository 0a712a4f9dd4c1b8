"""The small /push path (storage/json_events.py, ``push_json_async``): JSON columns encoded without
pandas give the frame path's events byte for byte, and any input it does not take goes to the frame
path, so bad input gets the frame path's error, whichever path a request takes."""

from __future__ import annotations

import asyncio
import uuid

import pandas as pd
import pytest
from feast import Entity, FileSource, PushSource, ValueType
from feast.data_format import ParquetFormat
from feast.data_source import PushMode
from feast.field import Field
from feast.types import Bool, Float32, Float64, Int32, String
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feast_sequence import SequenceFeatureView
from feast_sequence.definitions.settings import EventField
from feast_sequence.errors import SequenceInputError
from feast_sequence.online.push import push_async, push_json_async
from feast_sequence.online.push_server import _frame, push_columns_async
from feast_sequence.storage.append import encode_frame
from feast_sequence.storage.json_events import encode_json_columns

from repos import applied_store, click_settings, sequence_online

FIELDS = (
    EventField("item", ValueType.STRING),
    EventField("n", ValueType.INT32),
    EventField("price", ValueType.FLOAT),
    EventField("score", ValueType.DOUBLE),
    EventField("flag", ValueType.BOOL),
)
PLAIN = click_settings(fields=FIELDS)
DEDUP = click_settings(fields=FIELDS, dedup_by=("item",))

GOOD_TIMES = [
    "2024-03-01T00:00:00+00:00",
    "2024-03-01T00:00:00Z",
    "2024-03-01 12:30",
    "2024-03-01",
    "2024-03-01T00:00:00.123456+05:30",
    "2024-03-01T10:00:00.5",
    "2024-02-29T23:59:59-08:00",
]
BAD_TIMES = [
    "2024-02-30T00:00:00",
    "1969-12-31T23:59:59Z",
    "2300-01-01T00:00:00",
    "yesterday",
    "2024-03-01T00:00:00.1234567",
    "2024-W09-5",
    "",
    1709251200,
    None,
]


def _columns(**overrides):
    columns = {
        "user_id": [1],
        "item": ["a"],
        "n": [3],
        "price": [1.5],
        "score": [0.25],
        "flag": [True],
        "ts": [GOOD_TIMES[0]],
    }
    return {**columns, **overrides}


def _frame_result(settings_, columns):
    try:
        return encode_frame(settings_, pd.DataFrame(columns)), None
    except SequenceInputError as error:
        return None, str(error)


@pytest.mark.parametrize("view", [PLAIN, DEDUP], ids=["plain", "dedup_by"])
@pytest.mark.parametrize("ts", GOOD_TIMES)
def test_good_rows_encode_as_the_frame_path_encodes_them(view, ts):
    columns = _columns(ts=[ts, ts], user_id=[1, -7], item=["a", "é"], n=[3, -(2**31)], price=[1.5, 3], score=[1e300, 2])
    columns["flag"] = [True, False]
    fast = encode_json_columns(view, columns)
    assert fast is not None
    assert fast == encode_frame(view, pd.DataFrame(columns))


@pytest.mark.parametrize("ts", BAD_TIMES)
def test_a_timestamp_it_does_not_take_is_left_to_the_frame_path(ts):
    assert encode_json_columns(PLAIN, _columns(ts=[ts])) is None


def test_mixed_timestamp_shapes_are_left_to_the_frame_path():
    # pandas parses a column with the format of its first value: the frame path decides these
    assert (
        encode_json_columns(
            PLAIN, _columns(ts=GOOD_TIMES[:2], **{c: v * 2 for c, v in _columns().items() if c != "ts"})
        )
        is None
    )


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.sampled_from(["\ud800", "x" * 70_000]),
)
times = st.one_of(st.sampled_from(GOOD_TIMES + BAD_TIMES), st.text(max_size=30))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 3),
    data=st.data(),
    dedup=st.booleans(),
)
def test_whatever_the_values_it_encodes_what_the_frame_path_does_or_leaves_them_to_it(rows, data, dedup):
    view = DEDUP if dedup else PLAIN
    columns = {
        name: data.draw(st.lists(values, min_size=rows, max_size=rows)) for name in ("user_id", *view.field_names)
    }
    columns["ts"] = data.draw(st.lists(times, min_size=rows, max_size=rows))
    try:
        fast, fast_error = encode_json_columns(view, columns), None
    except SequenceInputError as error:
        fast, fast_error = None, str(error)
    expected, frame_error = _frame_result(view, columns)
    if fast_error is not None:  # only the per-event size check raises on this path: the same one
        assert fast_error == frame_error
    elif fast is not None:
        assert frame_error is None and fast == expected


# --- through the store: push_columns_async (the /push route) against push_async of the frame ---------

BAD_REQUESTS = {
    "null timestamp": _columns(ts=[None]),
    "number timestamp": _columns(ts=[1709251200]),
    "unparsable timestamp": _columns(ts=["yesterday"]),
    "timestamp out of range": _columns(ts=["2300-01-01T00:00:00"]),
    "before 1970": _columns(ts=["1969-12-31T23:59:59Z"]),
    "string for an int": _columns(n=["three"]),
    "int32 overflow": _columns(n=[2**31]),
    "float32 overflow": _columns(price=[1e39]),
    "float key": _columns(user_id=[1.5]),
    "null key": _columns(user_id=[None]),
    "bool for an int": _columns(n=[True]),
    "number for a string": _columns(item=[5]),
    "lone surrogate": _columns(item=["\ud800"]),
    "oversized event": _columns(item=["x" * 70_000]),
    "missing column": {k: v for k, v in _columns().items() if k != "price"},
    "ragged columns": _columns(item=["a", "b"]),
}


@pytest.fixture(scope="module")
def json_store(tmp_path_factory, redis_server):
    repo = tmp_path_factory.mktemp("json_push") / uuid.uuid4().hex[:8]
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    batch = FileSource(path=str(repo / "events.parquet"), file_format=ParquetFormat(), timestamp_field="ts")
    push = PushSource(name="events_push", batch_source=batch)
    schema = [
        Field(name="item", dtype=String),
        Field(name="n", dtype=Int32),
        Field(name="price", dtype=Float32),
        Field(name="score", dtype=Float64),
        Field(name="flag", dtype=Bool),
    ]
    views = [
        SequenceFeatureView(name="events", entities=[user], source=push, schema=schema, max_length=10),
        SequenceFeatureView(
            name="events_dedup", entities=[user], source=push, schema=schema, max_length=10, dedup_by=["item"]
        ),
    ]
    return applied_store(repo, "p" + repo.name, sequence_online(redis_server.connection_string), [user, push, *views])


def _error_of(push):
    try:
        asyncio.run(push())
    except Exception as error:  # compared below, type and message
        return type(error), str(error)
    return None


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_the_frame_paths_error_and_writes_nothing(json_store, redis_client, case):
    redis_client.flushall()
    columns = BAD_REQUESTS[case]
    fast = _error_of(lambda: push_columns_async(json_store, "events_push", columns, PushMode.ONLINE, True))
    # the frame path as it was: the route built the frame (refusing ragged columns), then push_async
    frame = _error_of(lambda: push_async(json_store, "events_push", _frame(columns), PushMode.ONLINE, True))
    assert fast is not None and fast == frame
    assert not list(redis_client.scan_iter(match=b"fsq:*}:z"))


def test_a_small_request_writes_what_the_frame_path_writes(json_store, redis_client):
    redis_client.flushall()
    columns = _columns(user_id=[1, 1], item=["a", "b"], n=[1, 2], price=[0.1, 2], score=[1.5, 2.5], flag=[True, False])
    columns["ts"] = ["2024-03-01T00:00:00.25Z", "2024-03-01T00:00:01.75Z"]

    def stored():
        return {
            key: redis_client.zrange(key, 0, -1, withscores=True) for key in redis_client.scan_iter(match=b"fsq:*}:z")
        }

    async def both():  # one event loop: the store keeps its async client
        assert await push_json_async(json_store, "events_push", columns, True)  # the small path took it
        fast = stored()
        redis_client.flushall()
        await push_async(json_store, "events_push", pd.DataFrame(columns), PushMode.ONLINE, True)
        return fast, stored()

    fast, frame = asyncio.run(both())
    assert len(fast) == 2 and fast == frame
