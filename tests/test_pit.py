"""The offline point-in-time replay (offline/pit.py), without Spark or Redis: at every query time T it
serves what the plain reference (tests/reference.py) computes from the events at or before T."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feast_sequence import sequence_settings
from feast_sequence.definitions.columns import EVENT_TIME_US, QUERY_TIME_US, ROW_ID
from feast_sequence.offline.pit import sequences_as_of

from reference import reference_sequences
from sample_repo import objects

SECOND = 1_000_000
FEATURES = ["item", "n", "price", "flag", "ts", EVENT_TIME_US]


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    """The sample repository's click views: plain, with dedup_by, and with a TTL (1 hour)."""
    found = {o.name: o for o in objects(tmp_path_factory.mktemp("pit")) if hasattr(o, "tags")}
    return {name: sequence_settings(found[name]) for name in ("clicks", "clicks_dedup", "clicks_ttl")}


event = st.tuples(
    st.sampled_from(["a", "b", "c", ""]),  # item: collisions exercise dedup_by
    st.one_of(st.none(), st.integers(-2, 2)),  # n: nulls are served as the type's default
    st.sampled_from([0.0, 1.5]),
    st.booleans(),
    st.one_of(st.integers(0, 4), st.integers(0, 7200)),  # seconds: ties, and events older than the TTL
    st.sampled_from([0, 7]),  # microseconds
)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(event, max_size=30),
    query_seconds=st.lists(st.integers(0, 7500), min_size=1, max_size=8),
    view=st.sampled_from(["clicks", "clicks_dedup", "clicks_ttl"]),
)
def test_each_query_gets_the_reference_sequence_of_the_events_before_it(views, rows, query_seconds, view):
    settings_ = views[view]
    events = [
        {"entity": 1, "item": i, "n": n, "price": p, "flag": f, "timestamp_us": s * SECOND + us}
        for i, n, p, f, s, us in rows
    ]
    # Queries exactly one TTL (an hour) after some events: those are the oldest still served.
    query_us = [s * SECOND for s in query_seconds] + [e["timestamp_us"] + 3600 * SECOND for e in events[:3]]
    event_table = pa.table(
        {
            "item": pa.array([e["item"] for e in events], pa.string()),
            "n": pa.array([e["n"] for e in events], pa.int32()),
            "price": pa.array([e["price"] for e in events], pa.float64()),
            "flag": pa.array([e["flag"] for e in events], pa.bool_()),
            EVENT_TIME_US: pa.array([e["timestamp_us"] for e in events], pa.int64()),
        }
    )
    queries = pa.table(
        {
            ROW_ID: pa.array(range(len(query_us)), pa.int64()),
            QUERY_TIME_US: pa.array(query_us, pa.int64()),
        }
    )

    served = sequences_as_of(settings_, FEATURES, event_table, queries).to_pylist()

    assert sorted(r[ROW_ID] for r in served) == list(range(len(query_us)))
    for row in served:
        t = query_us[row[ROW_ID]]
        want = reference_sequences(settings_, [e for e in events if e["timestamp_us"] <= t], now_us=t).get(1, [])
        assert row[EVENT_TIME_US] == [e["timestamp_us"] for e in want]
        assert row["ts"] == [e["timestamp_us"] // SECOND for e in want]
        assert row["item"] == [e["item"] for e in want]
        assert row["n"] == [e["n"] or 0 for e in want]
        assert row["price"] == [e["price"] for e in want]
        assert row["flag"] == [e["flag"] for e in want]


def test_no_query_is_an_empty_table_of_the_output_schema(views):
    events = pa.table({"item": pa.array(["a"]), "n": pa.array([1], pa.int32()), "price": [1.0], "flag": [True]})
    events = events.append_column(EVENT_TIME_US, pa.array([SECOND], pa.int64()))
    queries = pa.table({ROW_ID: pa.array([], pa.int64()), QUERY_TIME_US: pa.array([], pa.int64())})
    out = sequences_as_of(views["clicks"], ["item"], events, queries)
    assert out.num_rows == 0
    assert out.schema.names == [ROW_ID, "item"]
