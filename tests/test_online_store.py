"""The sequence store through Feast's own API, against a real redis-server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from feast.data_source import PushMode

from feast_sequence import SequenceInputError

from conftest import sequence_key_count
from sample_repo import events, objects

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def store(make_store, tmp_path):
    return make_store(objects(tmp_path / "events"))


def read(store, view, users, features=("item", "n", "ts"), **kwargs):
    refs = [f"{view}:{f}" for f in features]
    return store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in users], **kwargs).to_dict()


def test_events_are_served_newest_first_and_capped(store):
    rows = [(1, f"i{k}", k, k * 1.5, k % 2 == 0, at(k)) for k in range(8)]
    store.push("clicks_push", events(rows))
    out = read(store, "clicks", [1, 2])
    assert out["item"] == [["i7", "i6", "i5", "i4", "i3"], []]
    assert out["n"] == [[7, 6, 5, 4, 3], []]
    assert out["ts"][0] == [at(k).replace(second=0) for k in (7, 6, 5, 4, 3)]


def test_out_of_order_and_split_pushes_land_in_place(store):
    rows = [(1, f"i{k}", k, 0.0, False, at(k)) for k in range(6)]
    for chunk in ([rows[4], rows[1]], [rows[5]], [rows[0], rows[3], rows[2]]):
        store.push("clicks_push", events(chunk))
    assert read(store, "clicks", [1])["item"] == [["i5", "i4", "i3", "i2", "i1"]]


def test_duplicates_are_absorbed(store):
    rows = [(1, "a", 1, 1.0, True, at(1)), (1, "b", 2, 2.0, True, at(2))]
    store.push("clicks_push", events(rows))
    store.push("clicks_push", events(rows + rows))  # at-least-once redelivery
    assert read(store, "clicks", [1])["item"] == [["b", "a"]]


def test_dedup_by_keeps_the_latest_event_per_identity(store):
    rows = [
        (1, "a", 1, 1.0, False, at(1)),
        (1, "b", 2, 1.0, False, at(2)),
        (1, "a", 3, 1.0, False, at(3)),  # newer "a" replaces the first
        (1, "b", 9, 1.0, False, at(0)),  # older "b" loses
    ]
    store.push("clicks_push", events(rows))
    out = read(store, "clicks_dedup", [1])
    assert out["item"] == [["a", "b"]]
    assert out["n"] == [[3, 2]]


def test_equal_timestamps_have_an_arrival_independent_order(store, redis_client):
    rows = [(1, item, 1, 1.0, False, at(0)) for item in ["x", "b", "m", "a"]]
    store.push("clicks_push", events(rows))
    first = read(store, "clicks", [1])["item"]
    redis_client.flushall()
    store.push("clicks_push", events(rows[::-1]))
    assert read(store, "clicks", [1])["item"] == first
    assert sorted(first[0]) == ["a", "b", "m", "x"]


def test_ttl_hides_expired_events_and_expires_keys(store, redis_client):
    now = datetime.now(timezone.utc)
    rows = [
        (1, "old", 1, 1.0, False, now - timedelta(hours=2)),
        (1, "new", 2, 1.0, False, now - timedelta(minutes=1)),
    ]
    store.push("clicks_push", events(rows))
    assert read(store, "clicks_ttl", [1])["item"] == [["new"]]
    ttl_keys = [k for k in redis_client.keys(b"*clicks_ttl*")]
    assert ttl_keys and all(0 < redis_client.pttl(k) <= 3_600_000 for k in ttl_keys)
    store.push("clicks_push", events([(2, "ancient", 1, 1.0, False, now - timedelta(days=2))]))
    assert read(store, "clicks_ttl", [2])["item"] == [[]]
    assert not [k for k in redis_client.keys(b"*clicks_ttl*") if b"i\x012" in k]


def test_composite_entity_keys(store):
    df = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "session_id": ["s1", "s2", "s1"],
            "page": ["home", "cart", "search"],
            "ts": [at(1), at(2), at(3)],
        }
    )
    store.push("pages_push", df)
    rows = [
        {"user_id": 1, "session_id": "s1"},
        {"user_id": 1, "session_id": "s2"},
        {"user_id": 2, "session_id": "s1"},
        {"user_id": 2, "session_id": "s2"},
    ]
    out = store.get_online_features(features=["pages:page"], entity_rows=rows).to_dict()
    assert out["page"] == [["home"], ["cart"], ["search"], []]


def test_nulls_are_served_as_feast_list_defaults(store):
    df = events([(1, None, None, None, None, at(1))])
    df["n"] = pd.array([None], dtype="Int32")
    store.push("clicks_push", df)
    out = read(store, "clicks", [1], features=("item", "n", "price", "flag"))
    assert (out["item"], out["n"], out["price"], out["flag"]) == ([[""]], [[0]], [[0.0]], [[False]])


def test_output_formats_full_names_service_and_mixed_views(store):
    store.push("clicks_push", events([(1, "a", 1, 1.0, True, at(1)), (1, "b", 2, 2.0, True, at(2))]))
    store.push("profile_push", pd.DataFrame({"user_id": [1], "scores": [[4, 5]], "ts": [at(0)]}))
    response = store.get_online_features(
        features=["clicks:item", "profile:scores", "clicks_dedup:price"],
        entity_rows=[{"user_id": 1}],
        full_feature_names=True,
    )
    assert response.to_dict() == {
        "user_id": [1],
        "clicks__item": [["b", "a"]],
        "profile__scores": [[4, 5]],
        "clicks_dedup__price": [[2.0, 1.0]],
    }
    df = response.to_df()
    assert list(df["clicks__item"][0]) == ["b", "a"]
    table = response.to_arrow()
    assert str(table.schema.field("clicks__item").type) == "list<item: string>"
    service = store.get_feature_service("click_service")
    out = store.get_online_features(features=service, entity_rows=[{"user_id": 1}]).to_dict()
    assert out["item"] == [["b", "a"]] and out["n"] == [[2, 1]] and out["scores"] == [[4, 5]]


def test_async_push_and_read(store):
    async def scenario():
        await store.push_async("clicks_push", events([(7, "a", 1, 1.0, True, at(1)), (7, "b", 1, 1.0, True, at(2))]))
        response = await store.get_online_features_async(features=["clicks:item"], entity_rows=[{"user_id": 7}])
        return response.to_dict()

    assert asyncio.run(scenario())["item"] == [["b", "a"]]


def test_online_and_offline_push_reaches_the_batch_source(store, tmp_path):
    store.push("clicks_push", events([(3, "a", 1, 1.0, True, at(1))]), to=PushMode.ONLINE_AND_OFFLINE)
    assert read(store, "clicks", [3])["item"] == [["a"]]
    offline = pd.read_parquet(tmp_path / "events" / "clicks.parquet")
    # Feast writes a push source's rows once per view fed by it (three here); the copies are exact
    # duplicates, which the sequence semantics absorb.
    assert set(offline["item"]) == {"a"} and len(offline) == 3


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("ts", None, r"Column 'ts', row 1 \(index 1\): value None is null"),
        ("ts", "not a time", r"Column 'ts', row 1 \(index 1\): value 'not a time' is not a timestamp"),
        ("n", "seven", r"Column 'n', row 1 \(index 1\): value 'seven' cannot be converted to INT32"),
        ("n", 2**40, r"Column 'n', row 1 \(index 1\): value 1099511627776 cannot be converted to INT32"),
        ("user_id", None, r"Column 'user_id', row 1 \(index 1\): value .* is null"),
    ],
)
def test_bad_rows_reject_the_whole_push(store, redis_client, column, value, message):
    df = events([(1, "a", 1, 1.0, True, at(1)), (2, "b", 2, 2.0, True, at(2))]).astype(
        {"ts": object, "n": object, "user_id": object}
    )
    df.loc[1, column] = value
    with pytest.raises(SequenceInputError, match=message):
        store.push("clicks_push", df)
    assert sequence_key_count(redis_client) == 0


def test_missing_column_is_named(store, redis_client):
    df = events([(1, "a", 1, 1.0, True, at(1))]).drop(columns=["price"])
    with pytest.raises(Exception, match=r"price"):
        store.push("clicks_push", df)
    assert sequence_key_count(redis_client) == 0


def test_projects_on_one_redis_are_isolated(make_store, tmp_path):
    a = make_store(objects(tmp_path / "a_events"), project="alpha", name="a")
    b = make_store(objects(tmp_path / "b_events"), project="beta", name="b")
    a.push("clicks_push", events([(1, "from_a", 1, 1.0, True, at(1))]))
    assert read(b, "clicks", [1])["item"] == [[]]
    assert read(a, "clicks", [1])["item"] == [["from_a"]]


def test_removing_a_view_deletes_its_keys(store, redis_client):
    store.push("clicks_push", events([(u, "a", 1, 1.0, True, at(1)) for u in range(50)]))
    assert redis_client.keys(b"*:clicks_dedup:*")
    remaining = [
        o
        for o in objects(store.repo_path / "events2")
        if getattr(o, "name", "") not in ("clicks_dedup", "click_service")
    ]
    store.apply(remaining, objects_to_delete=[store.get_feature_view("clicks_dedup")], partial=False)
    assert not redis_client.keys(b"*:clicks_dedup:*")
    assert redis_client.keys(b"*:clicks:*")


def test_memory_stays_bounded_by_max_length(store, redis_client):
    for batch in range(4):
        store.push(
            "clicks_push",
            events([(1, f"i{batch}-{k}", k, 1.0, True, at(batch * 100 + k)) for k in range(100)]),
        )
    for key in redis_client.keys(b"*:{i*}:z"):
        assert redis_client.zcard(key) <= 5
    for key in redis_client.keys(b"*:{i*}:h"):
        assert redis_client.hlen(key) <= 5


def test_values_are_not_pickled(store, redis_client):
    store.push("clicks_push", events([(1, "a", 1, 1.0, True, at(1))]))
    for key in redis_client.keys(b"fsq:*:z"):
        for member in redis_client.zrange(key, 0, -1):
            assert not member.startswith(b"\x80")  # pickle protocol marker


def test_a_field_appended_to_the_schema_reads_as_defaults_for_older_events(store):
    from feast import Field
    from feast.types import String

    from feast_sequence import SequenceFeatureView

    from sample_repo import user

    store.push("clicks_push", events([(1, "old", 1, 1.0, True, at(1))]))
    clicks = store.get_feature_view("clicks")
    evolved = SequenceFeatureView(
        name="clicks",
        entities=[user],
        source=store.get_data_source("clicks_push"),
        schema=[Field(name=f.name, dtype=f.dtype.base_type) for f in clicks.features if f.name != "ts"]
        + [Field(name="color", dtype=String)],
        max_length=5,
    )
    store.apply([evolved])
    store.push("clicks_push", events([(1, "new", 2, 1.0, True, at(2))]).assign(color="red"))
    out = read(store, "clicks", [1], features=("item", "color", "n"))
    assert out == {"user_id": [1], "item": [["new", "old"]], "color": [["red", ""]], "n": [[2, 1]]}
