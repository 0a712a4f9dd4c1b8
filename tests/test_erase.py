"""Erasing entities (feast_sequence.erase, `feast-sequence erase`) on a real Redis: every key of the
erased entity's sequences goes, its marker makes every online writer drop its old events (pushes,
online_write_batch), a re-run is a no-op, the markers come back from the offline copy after Redis
loses them, serving logs lose the entity's rows, and bad input is one clear error."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta

import pandas as pd
import pytest
from feast import ValueType
from feast.data_source import PushMode
from prometheus_client import REGISTRY

import feast_sequence
from feast_sequence import SequenceInputError, erase
from feast_sequence.cli import main as cli_main
from feast_sequence.feast_internals import store_provider
from feast_sequence.monitoring import erasure
from feast_sequence.offline.erasures import read_audit, read_markers
from feast_sequence.serving import serving_log
from feast_sequence.serving.log_files import read_file_logs
from feast_sequence.storage.entity_keys import entity_key_bytes
from feast_sequence.storage.keys import erasure_key

import logged_repo
import serving_repo
from conftest import redis_state
from feast_server import feast_sequence_serve, module_repo, post
from repos import sequence_online
from sample_repo import events, objects, proto_rows

NOW = pd.Timestamp.now(tz="UTC").floor("s")
START = NOW - timedelta(minutes=40)  # within clicks_ttl's hour
CLICK_VIEWS = ("clicks", "clicks_dedup", "clicks_ttl")


def clicks_of(users, start, count=4):
    """``count`` click events per user, a minute apart from ``start``."""
    return events(
        [(u, f"item{u}-{i}", i, 1.0, False, start + timedelta(minutes=i)) for u in users for i in range(count)]
    )


def served_items(store, view, users):
    out = store.get_online_features(features=[f"{view}:item"], entity_rows=[{"user_id": u} for u in users]).to_dict()
    return {u: out["item"][i] or [] for i, u in enumerate(users)}


def dropped(view):
    return REGISTRY.get_sample_value("feast_sequence_erased_events_dropped_total", {"view": view}) or 0.0


def key_of(user):
    return entity_key_bytes([("user_id", ValueType.INT64, user)])


def user_keys(client, project, user):
    tag = b"{" + key_of(user) + b"}"
    return sorted(k for k in client.scan_iter(match=f"fsq:{project}:*".encode()) if tag in k)


@pytest.fixture
def store(make_store, tmp_path):
    store = make_store(objects(tmp_path / "events"))
    # Some users compacted into blocks, some not: erase must clear both.
    store.push("clicks_push", clicks_of([1, 2, 3], START, count=8))
    store_provider(store).online_store.drain_compactions(timeout_seconds=30)  # the compactions it left
    return store


def test_erase_removes_every_key_of_the_entity_and_leaves_the_others(store, redis_client):
    before = {v: served_items(store, v, [1, 2]) for v in CLICK_VIEWS}
    assert all(before[v][1] and before[v][2] for v in CLICK_VIEWS)
    sequence_keys_before = user_keys(redis_client, store.project, 1)
    assert any(k.endswith(b":c") for k in sequence_keys_before)  # one view compacted (max_length 5 < 8 events)

    result = erase(store, [{"user_id": 1}])

    assert result.entities == 1 and result.events_erased > 0 and result.views is None
    for view in CLICK_VIEWS:
        assert served_items(store, view, [1, 2]) == {1: [], 2: before[view][2]}
    # Only the marker is left of user 1, keyed by its hash tag (one slot with its sequences).
    assert user_keys(redis_client, store.project, 1) == [erasure_key(store.project, key_of(1))]
    assert redis_client.hgetall(erasure_key(store.project, key_of(1))) == {b"*": str(result_us(result)).encode()}


def result_us(result):
    return int(result.before.timestamp() * 1_000_000)


def test_a_push_and_online_write_batch_of_erased_events_are_dropped_and_counted(store, redis_client):
    erase(store, [{"user_id": 1}])
    old = clicks_of([1, 2], START - timedelta(minutes=10))
    counted = dropped("clicks")
    store.push("clicks_push", old)
    assert served_items(store, "clicks", [1])[1] == []
    assert dropped("clicks") == counted + 4  # user 1's four events, not user 2's

    online = store._get_provider().online_store
    view = store.get_feature_view("clicks_dedup")
    online.online_write_batch(store.config, view, proto_rows(old[old.user_id == 1]), None)
    assert served_items(store, "clicks_dedup", [1])[1] == []

    # Events after the erasure's time are the entity's new life: kept.
    later = clicks_of([1], pd.Timestamp.now(tz="UTC") + timedelta(seconds=5), count=2)
    store.push("clicks_push", later)
    assert served_items(store, "clicks", [1])[1] == ["item1-1", "item1-0"]


WRITERS = {
    "store.push": lambda store, df: store.push("clicks_push", df),
    "store.push_async": lambda store, df: asyncio.run(store.push_async("clicks_push", df)),
    "feast_sequence.push": lambda store, df: feast_sequence.push(store, "clicks_push", df),
    "feast_sequence.push_async": lambda store, df: asyncio.run(feast_sequence.push_async(store, "clicks_push", df)),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_push_path_drops_an_erased_entitys_old_events_and_counts_them(store, writer):
    before = {v: served_items(store, v, [1, 2]) for v in CLICK_VIEWS}
    erase(store, [{"user_id": 1}])
    counted = {v: dropped(v) for v in CLICK_VIEWS}
    later = START + timedelta(minutes=8)  # user 2's new events, still before the erasure: kept for user 2
    WRITERS[writer](store, clicks_of([1, 2], later, count=2))
    # User 1's two events are dropped by each view fed by the push source; user 2's are written.
    assert {v: dropped(v) - counted[v] for v in CLICK_VIEWS} == {v: 2 for v in CLICK_VIEWS}
    for view in CLICK_VIEWS:
        after = served_items(store, view, [1, 2])
        assert after[1] == []
        assert after[2][:2] == ["item2-1", "item2-0"] and after[2] != before[view][2]


def test_the_servers_http_push_drops_an_erased_entitys_old_events(tmp_path, redis_client, redis_server):
    from feast import FeatureStore

    repo = tmp_path / "repo"
    env = module_repo(repo, "sample_repo", "erasehttp", sequence_online(redis_server.connection_string))
    with feast_sequence_serve(repo, env=env) as port:

        def push_http(df):
            frame = df.assign(ts=df["ts"].map(lambda t: t.isoformat()))
            post(port, "/push", {"push_source_name": "clicks_push", "df": frame.to_dict("list"), "to": "online"})

        push_http(clicks_of([1, 2], START, count=3))
        local = FeatureStore(repo_path=str(repo))
        assert served_items(local, "clicks", [1, 2]) == {u: [f"item{u}-{i}" for i in (2, 1, 0)] for u in (1, 2)}
        erase(local, [{"user_id": 1}])
        push_http(clicks_of([1, 2], START + timedelta(minutes=3), count=2))  # replayed, before the erasure
        assert served_items(local, "clicks", [1, 2]) == {
            1: [],
            2: ["item2-1", "item2-0", "item2-2", "item2-1", "item2-0"],
        }


def test_erase_before_a_time_keeps_later_events_in_tails_and_blocks(store):
    cut = START + timedelta(minutes=4, seconds=30)  # events 0..4 erased, 5..7 kept
    erase(store, [{"user_id": 2}], views=["clicks", "clicks_dedup"], before=cut.to_pydatetime())
    for view in ("clicks", "clicks_dedup"):
        assert served_items(store, view, [2])[2] == ["item2-7", "item2-6", "item2-5"]
    assert len(served_items(store, "clicks_ttl", [2])[2]) == 5  # not named: untouched
    # The marker is per view: an old event pushed again is dropped by the named views only.
    counted = {v: dropped(v) for v in CLICK_VIEWS}
    store.push("clicks_push", clicks_of([2], START, count=1))
    assert {v: dropped(v) - counted[v] for v in CLICK_VIEWS} == {"clicks": 1, "clicks_dedup": 1, "clicks_ttl": 0}
    assert served_items(store, "clicks", [2])[2] == ["item2-7", "item2-6", "item2-5"]


def test_a_second_erase_is_a_no_op(store, redis_client):
    first = erase(store, [{"user_id": 1}, {"user_id": 3}])
    state = redis_state(redis_client, store)
    marker = redis_client.hgetall(erasure_key(store.project, key_of(1)))
    again = erase(store, [{"user_id": 1}, {"user_id": 3}], before=first.before)
    assert again.events_erased == 0
    assert redis_state(redis_client, store) == state
    assert redis_client.hgetall(erasure_key(store.project, key_of(1))) == marker


def test_markers_come_back_from_the_offline_copy_after_redis_loses_them(store, redis_client):
    result = erase(store, [{"user_id": 1}], by="dpo@example.com")
    assert [m.entity for m in read_markers(store.config)] == [{"user_id": 1}]
    redis_client.flushall()  # a restart without persistence
    store.push("clicks_push", clicks_of([1], START, count=8))  # an old replay, before reapply
    erasure.reapply(store)
    assert served_items(store, "clicks", [1])[1] == []
    store.push("clicks_push", clicks_of([1], START - timedelta(minutes=10)))
    assert served_items(store, "clicks", [1])[1] == []
    # The audit record: who, when, what and counts, without the entity key.
    (audit,) = read_audit(store.config)
    assert audit["by"] == "dpo@example.com" and audit["entities"] == 1
    assert audit["events_erased"] == result.events_erased and "user_id" not in json.dumps(audit)


def test_ten_thousand_entities_in_one_call_in_batches_with_progress(store, redis_client):
    users = range(10, 10_010)
    store.push("clicks_push", clicks_of(users, START - timedelta(minutes=10), count=1))
    seen = []
    result = erase(store, [{"user_id": u} for u in users], views=["clicks"], on_erased=seen.append)
    assert result.entities == 10_000 and result.events_erased == 10_000
    assert len(seen) > 1 and sum(seen) == 10_000
    served = served_items(store, "clicks", [10, 10_009, 2])
    assert served[10] == served[10_009] == [] and len(served[2]) == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--entity", "user_id=1", "--view", "nope"], r"No sequence view named \['nope'\]"),
        (["--entity", "user_id"], r"Entity 'user_id': use key=value"),
        (["--entity", "user_id=abc"], r"user_id='abc' is not a INT64 value"),
        (["--entity", "customer=1"], r"Entity \{'customer': '1'\}: give a mapping of the join keys"),
    ],
)
def test_bad_input_is_one_line_and_erases_nothing(store, redis_client, capsys, argv, message):
    state = redis_state(redis_client, store)
    assert cli_main(["erase", "--repo", str(store.repo_path), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert redis_state(redis_client, store) == state and read_markers(store.config) == []


def test_the_command_erases_and_says_what_it_did(store, capsys):
    assert cli_main(["erase", "--repo", str(store.repo_path), "--entity", "user_id=1"]) == 0
    assert "1 entities erased from every sequence view" in capsys.readouterr().out
    assert served_items(store, "clicks", [1])[1] == []
    with pytest.raises(SequenceInputError, match="no such folder"):
        erase(store, [{"user_id": 1}], reports=["/nonexistent/report"])


def test_serving_log_rows_of_the_entity_are_removed(make_store, tmp_path):
    data = tmp_path / "logged"
    store = make_store(logged_repo.objects(data), name="logged")
    now = pd.Timestamp.now(tz="UTC")
    store.push("items_push", serving_repo.item_rows(30, now - pd.Timedelta(days=90)), to=PushMode.ONLINE)
    store.push("clicks_push", serving_repo.clicks(60, 4, now, seed=4), to=PushMode.ONLINE)
    service = store.get_feature_service("ranking_logged")
    serving_log.configure(flush_interval_s=0.05)
    try:
        store.get_online_features(features=service, entity_rows=[{"user_id": u} for u in range(4)])
        assert serving_log.flush()
    finally:
        serving_log.configure()
    logged = read_file_logs(store.config, service.logging_config.destination).to_pandas()
    assert sorted(logged["user_id"]) == [0, 1, 2, 3]

    result = erase(store, [{"user_id": 1}, {"user_id": 3}])

    assert result.log_rows_removed == 2
    kept = read_file_logs(store.config, service.logging_config.destination).to_pandas()
    assert sorted(kept["user_id"]) == [0, 2]
    pd.testing.assert_frame_equal(
        kept.reset_index(drop=True), logged[logged.user_id.isin([0, 2])].reset_index(drop=True), check_like=True
    )


def test_training_on_the_file_offline_store_leaves_out_erased_events(store, tmp_path):
    source = clicks_of([1, 2], START)
    source.to_parquet(tmp_path / "events" / "clicks.parquet")  # the clicks views' batch source
    entity_df = pd.DataFrame({"user_id": [1, 2], "ts": [NOW, NOW]})

    def training():
        frame = store.get_historical_features(entity_df=entity_df, features=["clicks:item"]).to_df()
        return {u: list(v) if v is not None else [] for u, v in zip(frame["user_id"], frame["item"])}

    assert training() == {u: [f"item{u}-{i}" for i in (3, 2, 1, 0)] for u in (1, 2)}
    erase(store, [{"user_id": 1}], before=(START + timedelta(minutes=1)).to_pydatetime())
    assert training() == {1: ["item1-3", "item1-2"], 2: [f"item2-{i}" for i in (3, 2, 1, 0)]}
