"""Integrity across the data's lifecycle, on real Redis: definition changes by `feast apply`, TTL
changes, eviction policies, partial states and a Redis that lost its data. The compatibility table
these tests walk is in docs/concepts.md, "Definition changes"."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, List

import pandas as pd
import pytest
from feast import Entity, FeatureStore, Field, PushSource, ValueType
from feast.data_source import PushMode
from feast.types import Float32, Int32, Int64, String

from feast_sequence import (
    SequenceConfigurationError,
    SequenceDefinitionError,
    SequenceFeatureView,
    SequenceStoreError,
    sequence_settings,
)
from feast_sequence.feast_internals import store_provider
from feast_sequence.online.health import check
from feast_sequence.testing.local_redis import LocalRedis

from conftest import sequence_key_count
from repos import applied_store, push_source, sequence_online

NOW = datetime.now(timezone.utc).replace(microsecond=0)
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
user_by_name = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)

FIELDS = {
    "item": String,
    "price": Float32,
    "cost": Float32,
    "n": Int32,
    "big": Int64,
}


def source(data_dir: Path) -> PushSource:
    columns = {"user_id": "int64", "item": "string", "price": "float32", "cost": "float32", "n": "int32"}
    return push_source("events", data_dir, columns)


def view(data_dir: Path, fields=("item", "price", "cost"), entity=user, **overrides: Any) -> SequenceFeatureView:
    args: dict = dict(
        name="events",
        entities=[entity],
        source=source(data_dir),
        schema=[Field(name=f, dtype=FIELDS[f]) for f in fields],
        max_length=10,
    )
    args.update(overrides)
    return SequenceFeatureView(**args)


def push(store: FeatureStore, rows: List[dict], to: PushMode = PushMode.ONLINE) -> None:
    df = pd.DataFrame(rows)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    store.push("events_push", df, to=to)


def read(store: FeatureStore, fields: List[str], users=(1,)) -> dict:
    return store.get_online_features(
        features=[f"events:{f}" for f in fields], entity_rows=[{"user_id": u} for u in users]
    ).to_dict()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data_files"


# --- field numbers survive definition changes (case 1) ------------------------------------------


def test_removing_a_field_from_the_middle_keeps_every_other_fields_values(make_store, data_dir):
    store = make_store([user, view(data_dir)])
    push(store, [{"user_id": 1, "item": "a", "price": 100.0, "cost": 3.0, "ts": NOW}])

    store.apply([view(data_dir, fields=("item", "cost"))])
    push(store, [{"user_id": 1, "item": "b", "cost": 4.0, "ts": NOW + timedelta(seconds=1)}])

    out = read(store, ["item", "cost"])
    assert out["item"] == [["b", "a"]]
    assert out["cost"] == [[4.0, 3.0]]


def test_a_field_added_in_the_middle_serves_defaults_for_older_events(make_store, data_dir):
    store = make_store([user, view(data_dir, fields=("item", "cost"))])
    push(store, [{"user_id": 1, "item": "a", "cost": 3.0, "ts": NOW}])
    store.apply([view(data_dir, fields=("item", "n", "cost"))])
    push(store, [{"user_id": 1, "item": "b", "n": 7, "cost": 4.0, "ts": NOW + timedelta(seconds=1)}])
    out = read(store, ["item", "n", "cost"])
    assert (out["item"], out["n"], out["cost"]) == ([["b", "a"]], [[7, 0]], [[4.0, 3.0]])


def test_a_removed_field_cannot_come_back_under_its_old_number(make_store, data_dir):
    store = make_store([user, view(data_dir)])
    push(store, [{"user_id": 1, "item": "a", "price": 100.0, "cost": 3.0, "ts": NOW}])
    store.apply([view(data_dir, fields=("item", "cost"))])
    with pytest.raises(SequenceDefinitionError, match=r"'price' would reuse stored number .* removed field"):
        store.apply([view(data_dir)])


def test_field_numbers_are_recorded_in_the_registry(make_store, data_dir):
    store = make_store([user, view(data_dir)])
    fresh = FeatureStore(repo_path=str(store.repo_path))
    numbers = {f.name: f.stored_number for f in sequence_settings(fresh.get_feature_view("events")).fields}
    assert len(set(numbers.values())) == 3
    store.apply([view(data_dir, fields=("cost", "item"))])  # reordered and one removed
    again = FeatureStore(repo_path=str(store.repo_path))
    kept = {f.name: f.stored_number for f in sequence_settings(again.get_feature_view("events")).fields}
    assert kept == {"cost": numbers["cost"], "item": numbers["item"]}


# --- changes that would change served answers are refused (cases 2 and 16) --------------------

REFUSED = {
    "adding dedup_by": (dict(), dict(dedup_by=["item"]), r"dedup_by changes from None to \['item'\]"),
    "changing dedup_by": (
        dict(dedup_by=["item"]),
        dict(dedup_by=["item", "cost"]),
        r"dedup_by changes from \['item'\] to \['item', 'cost'\]",
    ),
    "removing dedup_by": (dict(dedup_by=["item"]), dict(), r"dedup_by changes from \['item'\] to None"),
    "changing a field's type": (
        dict(fields=("item", "n")),
        dict(fields=("item", "n"), schema=[Field(name="item", dtype=String), Field(name="n", dtype=Int64)]),
        r"field 'n' changes type from INT32 to INT64",
    ),
    "changing the entity key's type": (
        dict(),
        dict(entity=user_by_name),
        r"entity key changes from user_id \(INT64\) to user_id \(STRING\)",
    ),
}


@pytest.mark.parametrize("before, after, message", REFUSED.values(), ids=list(REFUSED))
def test_changes_that_would_change_served_answers_are_refused(make_store, data_dir, before, after, message):
    first = view(data_dir, **before)
    store = make_store([user, first])
    push(store, [{"user_id": 1, "item": "a", "price": 1.0, "cost": 2.0, "n": 3, "ts": NOW}])
    served = read(store, ["item"])
    with pytest.raises(SequenceDefinitionError, match=message) as refused:
        store.apply([view(data_dir, **after)])
    assert "feast-sequence reindex --repo <repo> --view events" in str(refused.value)
    assert "under a new view name" in str(refused.value)
    # Nothing changed: the registry keeps the old definition, the data is served as before.
    fresh = FeatureStore(repo_path=str(store.repo_path))
    assert sequence_settings(fresh.get_feature_view("events")) == sequence_settings(first)
    assert read(fresh, ["item"]) == served


def test_compatible_changes_apply_in_place(make_store, data_dir):
    store = make_store([user, view(data_dir, dedup_by=["item"], max_length=5)])
    push(
        store,
        [
            {"user_id": 1, "item": f"i{k}", "price": 1.0, "cost": float(k), "ts": NOW - timedelta(seconds=k)}
            for k in range(5)
        ],
    )
    store.apply([view(data_dir, dedup_by=["item"], max_length=3, ttl=timedelta(days=1), fields=("item", "cost", "n"))])
    push(store, [{"user_id": 1, "item": "i4", "cost": 9.0, "n": 1, "ts": NOW + timedelta(seconds=1)}])
    out = read(store, ["item", "cost"])
    assert out["item"] == [["i4", "i0", "i1"]]
    assert out["cost"] == [[9.0, 0.0, 1.0]]


def test_teardown_deletes_every_key_and_the_stored_definition(make_store, data_dir, redis_client):
    store = make_store([user, view(data_dir, dedup_by=["item"])])
    push(store, [{"user_id": u, "item": "a", "price": 1.0, "cost": 2.0, "ts": NOW} for u in range(20)])
    assert sequence_key_count(redis_client) == 40
    store.teardown()
    assert redis_client.keys(b"fsq:*") == []


# --- TTL is the current definition's (cases 3 and 4) --------------------------------------------


def ttls_ms(client) -> List[int]:
    return sorted(client.pttl(k) for k in client.scan_iter(match=b"fsq:*:{*"))


def test_a_lowered_or_added_ttl_applies_to_stored_keys_without_a_new_push(make_store, data_dir, redis_client):
    store = make_store([user, view(data_dir, dedup_by=["item"])])
    push(store, [{"user_id": 1, "item": "a", "price": 1.0, "cost": 2.0, "ts": datetime.now(timezone.utc)}])
    assert ttls_ms(redis_client) == [-1, -1]
    store.apply([view(data_dir, dedup_by=["item"], ttl=timedelta(days=1))])
    assert all(86_000_000 < t <= 86_400_000 for t in ttls_ms(redis_client))
    # Lowered to ten minutes, not seconds: the keys must not expire (event time + TTL) while two
    # applies run on a loaded machine.
    store.apply([view(data_dir, dedup_by=["item"], ttl=timedelta(minutes=10))])
    expiries = ttls_ms(redis_client)
    assert len(expiries) == 2 and all(0 < t <= 600_000 for t in expiries)


def test_a_view_without_stored_sequences_may_raise_its_ttl_and_max_length(make_store, data_dir, redis_client):
    store = make_store([user, view(data_dir, ttl=timedelta(seconds=3), max_length=5)])
    store.apply([view(data_dir, max_length=50)])  # TTL removed, max_length raised: nothing is stored
    push(store, [{"user_id": 1, "item": "a", "price": 1.0, "cost": 2.0, "ts": datetime.now(timezone.utc)}])
    assert ttls_ms(redis_client) == [-1]
    assert read(store, ["item"])["item"] == [["a"]]


def test_a_sub_second_ttl_is_exact(make_store, data_dir, redis_client):
    store = make_store([user, view(data_dir, ttl=timedelta(milliseconds=500))])
    now = datetime.now(timezone.utc).replace(microsecond=0)
    later = now + timedelta(hours=1)  # its keys cannot expire while the test reads them
    push(
        store,
        [
            {"user_id": 1, "item": "old", "price": 1.0, "cost": 2.0, "ts": now - timedelta(days=365)},
            {"user_id": 2, "item": "new", "price": 1.0, "cost": 2.0, "ts": later},
        ],
    )
    assert read(store, ["item"], users=(1,))["item"] == [[]]
    # The year-old event's keys were deleted; the other's expire 0.5 s after its event, to the millisecond.
    expiries = {redis_client.pexpiretime(k) for k in redis_client.scan_iter(match=b"fsq:*:{*")}
    assert expiries == {int(later.timestamp() * 1000) + 500}
    assert sequence_settings(view(data_dir, ttl=timedelta(seconds=1.9))).ttl_us == 1_900_000


def test_a_ttl_finer_than_a_millisecond_is_refused(data_dir):
    with pytest.raises(SequenceDefinitionError, match=r"not a whole number of milliseconds"):
        view(data_dir, ttl=timedelta(microseconds=1500))


# --- eviction (case 5) --------------------------------------------------------------------------


@pytest.fixture
def private_redis():
    with LocalRedis() as server:
        yield server


def private_store(tmp_path: Path, server: LocalRedis, objects: List) -> FeatureStore:
    return applied_store(tmp_path / "private", "evict", sequence_online(server.connection_string), objects)


def test_an_evicting_redis_is_refused_at_apply_and_at_the_first_push(tmp_path, data_dir, private_redis):
    client = private_redis.client()
    store = private_store(tmp_path, private_redis, [user, view(data_dir, dedup_by=["item"])])
    client.config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(SequenceConfigurationError, match=r"maxmemory-policy allkeys-lru.*noeviction"):
        store.apply([view(data_dir, dedup_by=["item"])])
    fresh = FeatureStore(repo_path=str(store.repo_path))  # a new process starting its store
    with pytest.raises(SequenceConfigurationError, match=r"maxmemory-policy allkeys-lru"):
        push(fresh, [{"user_id": 1, "item": "a", "price": 1.0, "cost": 2.0, "ts": NOW}])
    assert sequence_key_count(client) == 0


def test_an_eviction_policy_changed_on_a_running_server_is_noticed(tmp_path, data_dir, private_redis):
    """Issue 22, case 9: the store re-reads the policy every eviction_check_seconds, and health reads it."""
    client = private_redis.client()
    objects = [user, view(data_dir, dedup_by=["item"])]
    store = applied_store(
        tmp_path / "running",
        "evict",
        sequence_online(private_redis.connection_string, eviction_check_seconds=0.2),
        objects,
    )
    row = {"user_id": 1, "item": "a", "price": 1.0, "cost": 2.0, "ts": NOW}
    push(store, [row])  # the store's client is made and the policy read
    client.config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(SequenceConfigurationError, match=r"maxmemory-policy allkeys-lru"):
        check(store)
    time.sleep(0.3)
    with pytest.raises(SequenceConfigurationError, match=r"maxmemory-policy allkeys-lru"):
        push(store, [{**row, "item": "b"}])
    with pytest.raises(SequenceConfigurationError, match=r"maxmemory-policy allkeys-lru"):
        read(store, ["item"])
    client.config_set("maxmemory-policy", "noeviction")
    push(store, [{**row, "item": "b"}])
    assert read(store, ["item"])["item"] == [["b", "a"]]


def test_under_memory_pressure_each_entity_is_written_whole_or_not_at_all(tmp_path, data_dir, private_redis):
    client = private_redis.client()
    store = private_store(tmp_path, private_redis, [user, view(data_dir, dedup_by=["item"], max_length=50)])
    client.config_set("maxmemory", 3 * 1024 * 1024)
    rows = [
        {
            "user_id": u,
            "item": f"item-{k}-{'x' * 40}",
            "price": 1.0,
            "cost": float(k),
            "ts": NOW - timedelta(seconds=k),
        }
        for u in range(400)
        for k in range(30)
    ]
    with pytest.raises(SequenceStoreError, match=r"(?s)out of memory.*may have been written.*safe to re-send"):
        push(store, rows)
    lengths = {len(items) for items in read(store, ["item"], users=range(400))["item"]}
    assert lengths <= {0, 30} and lengths == {0, 30}  # some entities whole, the others untouched
    client.config_set("maxmemory", 0)
    push(store, rows)  # re-sending is safe
    assert {len(i) for i in read(store, ["item"], users=range(400))["item"]} == {30}


# --- no partial state from a script (case 6) ----------------------------------------------------


def test_an_orphaned_identity_is_healed_instead_of_failing_half_way(make_store, data_dir, redis_client):
    store = make_store([user, view(data_dir, dedup_by=["item"])])
    push(store, [{"user_id": 1, "item": "a", "price": 1.0, "cost": 1.0, "ts": NOW}])
    (zkey,) = redis_client.keys(b"fsq:*}:z")
    redis_client.delete(zkey)  # the hash keeps identity 'a' without its event (a partial state)
    push(
        store,
        [
            {"user_id": 1, "item": "c", "price": 1.0, "cost": 3.0, "ts": NOW + timedelta(seconds=2)},
            {"user_id": 1, "item": "a", "price": 1.0, "cost": 2.0, "ts": NOW + timedelta(seconds=1)},
        ],
    )
    out = read(store, ["item", "cost"])
    assert (out["item"], out["cost"]) == ([["c", "a"]], [[3.0, 2.0]])


# --- a Redis that lost its data (case 15) -------------------------------------------------------


def test_health_reports_a_redis_that_lost_its_data(make_store, data_dir, redis_client):
    store = make_store([user, view(data_dir)])
    assert check(store) > 0
    redis_client.flushall()  # what a restart without persistence leaves
    with pytest.raises(SequenceStoreError, match=r"no record of sequence view\(s\) \['events'\].*restart"):
        check(store)
    store.apply([view(data_dir)])  # re-applying (after a backfill) records it again
    assert check(store) > 0


# --- enrichments and renames -------------------------------------------------------------------


def test_an_enrichment_removed_and_added_again_applies_in_place(make_store, tmp_path):
    import serving_repo

    objects = serving_repo.objects(tmp_path / "serving")
    by_name = {getattr(o, "name", None): o for o in objects}
    indexed = by_name["clicks_indexed"]
    store = make_store(objects)
    now = pd.Timestamp.now(tz="UTC")
    store.push("items_push", serving_repo.item_rows(10, now - pd.Timedelta(days=1)))
    store.push("clicks_push", serving_repo.clicks(40, users=3, now=now, seed=1, items=10))

    def served() -> dict:
        return store.get_online_features(
            features=["clicks_indexed:item_id", "clicks_indexed:n"],
            entity_rows=[{"user_id": u} for u in range(3)],
        ).to_dict()

    before = served()
    without = SequenceFeatureView(
        name="clicks_indexed",
        entities=[serving_repo.user],
        source=indexed.stream_source,
        schema=[
            Field(name="item_id", dtype=String),
            Field(name="kind", dtype=String),
            Field(name="n", dtype=Int32),
        ],
        max_length=20,
        dedup_by=["item_id", "kind"],
    )
    store.apply([without])
    assert served() == before
    store.apply([indexed])  # the enrichment back: its numbers may be reused
    assert served() == before


def test_a_renamed_view_is_a_new_view_and_the_old_keys_go_with_the_old_one(make_store, data_dir, redis_client):
    old = view(data_dir)
    store = make_store([user, old])
    push(store, [{"user_id": u, "item": "a", "price": 1.0, "cost": 2.0, "ts": NOW} for u in range(5)])
    renamed = view(data_dir, name="events_v2")
    store.apply([renamed], objects_to_delete=[old], partial=False)
    assert redis_client.keys(b"fsq:*:events:*") == []
    assert redis_client.hkeys(b"fsq:" + store.project.encode() + b":__definitions__") == [b"events_v2"]
    out = store.get_online_features(features=["events_v2:item"], entity_rows=[{"user_id": 0}]).to_dict()
    assert out["item"] == [[]]


def test_two_names_on_one_stored_number_are_a_definition_error_with_a_remedy(data_dir):
    # crc32 puts "f39" and "f70" on the same stored number (360).
    FIELDS.update({"f39": Int32, "f70": Int32})
    with pytest.raises(SequenceDefinitionError, match=r"'f39' and 'f70' would share stored field number 360"):
        view(data_dir, fields=("f39", "f70"))
    resolved = view(data_dir, fields=("f39", "f70"), field_numbers={"f70": 361})
    numbers = {f.name: f.stored_number for f in sequence_settings(resolved).fields}
    assert numbers == {"f39": 360, "f70": 361}


# --- the served window only narrows in place (issue 22, cases 3, 4 and 5) -----------------------


def compact(store: FeatureStore) -> int:
    return store_provider(store).online_store.compact_sequence_view(
        store.config, sequence_settings(store.get_feature_view("events"))
    )


def registered(store: FeatureStore) -> FeatureStore:
    """The store as a new process sees it: a refused `feast apply` leaves the registry as it was
    (the ``FeatureStore`` that applied keeps the refused view in its registry cache)."""
    return FeatureStore(repo_path=str(store.repo_path))


def events_at(seconds: List[float], now: datetime) -> List[dict]:
    return [
        {"user_id": 1, "item": f"i{k}", "price": 1.0, "cost": float(k), "n": k, "ts": now - timedelta(seconds=s)}
        for k, s in enumerate(seconds)
    ]


@pytest.mark.parametrize("compacted", [False, True])
def test_a_lowered_then_raised_max_length_is_refused_and_serves_alike_with_a_block(make_store, data_dir, compacted):
    store = make_store([user, view(data_dir, max_length=10)])
    push(store, events_at(list(range(10, 0, -1)), NOW))
    store.apply([view(data_dir, max_length=5)])
    push(store, events_at([0], NOW + timedelta(seconds=1)))
    if compacted:
        assert compact(store) == 1
    with pytest.raises(SequenceDefinitionError, match=r"max_length rises from 5 to 10") as refused:
        store.apply([view(data_dir, max_length=10)])
    assert "feast-sequence reindex --repo <repo> --view events" in str(refused.value)
    assert len(read(registered(store), ["item"])["item"][0]) == 5


@pytest.mark.parametrize("compacted", [False, True])
@pytest.mark.parametrize("raised", [timedelta(hours=1), None], ids=["raised", "removed"])
def test_a_temporarily_lowered_ttl_cannot_be_raised_back_over_stored_sequences(make_store, data_dir, compacted, raised):
    now = datetime.now(timezone.utc)
    store = make_store([user, view(data_dir, ttl=timedelta(hours=1))])
    push(store, events_at([1500, 1200, 900, 600, 300, 5, 4, 3], now))
    store.apply([view(data_dir, ttl=timedelta(seconds=20))])
    if compacted:
        assert compact(store) == 1
    with pytest.raises(SequenceDefinitionError, match=r"the TTL of 0:00:20 (rises to 1:00:00|is removed)") as refused:
        store.apply([view(data_dir, ttl=raised)])
    assert "feast-sequence reindex --repo <repo> --view events" in str(refused.value)
    assert read(registered(store), ["item"])["item"] == [["i7", "i6", "i5"]]


def test_training_data_equals_serving_across_a_max_length_change(make_store, data_dir):
    longer, shorter = view(data_dir, max_length=40), view(data_dir, max_length=10)  # before the source fills
    store = make_store([user, longer])
    push(store, events_at(list(range(30, 0, -1)), NOW), to=PushMode.ONLINE_AND_OFFLINE)
    store.apply([shorter])
    push(store, events_at([0], NOW + timedelta(seconds=1)), to=PushMode.ONLINE_AND_OFFLINE)
    with pytest.raises(SequenceDefinitionError, match=r"max_length rises from 10 to 40"):
        store.apply([longer])

    store = registered(store)
    served = read(store, ["item", "cost"])
    entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [NOW + timedelta(seconds=2)]})
    training = store.get_historical_features(entity_df=entity_df, features=["events:item", "events:cost"]).to_df()
    assert len(served["item"][0]) == 10
    assert [list(training["item"][0]), list(training["cost"][0])] == [served["item"][0], served["cost"][0]]


# --- an event re-sent after its view's fields changed is the same event (issue 22, case 7) -------

FIELD_CHANGES = {
    "removed": (("item", "price", "cost"), ("item", "cost")),
    "added": (("item", "cost"), ("item", "n", "cost")),
    "moved": (("item", "price", "cost"), ("cost", "item", "price")),
}


@pytest.mark.parametrize("compacted", [False, True], ids=["tail", "block"])
@pytest.mark.parametrize("dedup_by", [None, ["item"]], ids=["plain", "dedup_by"])
@pytest.mark.parametrize("change", list(FIELD_CHANGES))
def test_an_event_re_sent_after_its_fields_changed_is_served_once(make_store, data_dir, compacted, dedup_by, change):
    before, after = FIELD_CHANGES[change]
    store = make_store([user, view(data_dir, fields=before, dedup_by=dedup_by)])
    first = {"user_id": 1, "item": "a", "price": 5.0, "cost": 3.0, "ts": NOW}
    push(store, [{k: v for k, v in first.items() if k in ("user_id", "ts", *before)}])
    if compacted:
        assert compact(store) == 1
    store.apply([view(data_dir, fields=after, dedup_by=dedup_by)])
    again = {k: first.get(k) for k in ("user_id", "ts", *after)}  # a field it was sent without is null
    push(store, [again, {**again, "item": "b", "ts": NOW + timedelta(seconds=1)}])  # at-least-once: sent again
    out = read(store, ["item", "cost"])
    assert (out["item"], out["cost"]) == ([["b", "a"]], [[3.0, 3.0]])
    if compacted:
        compact(store)
        assert read(store, ["item", "cost"]) == out
