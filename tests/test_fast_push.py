"""``feast_sequence.push`` / ``push_async`` write what ``store.push`` writes (online and offline, sequence
and regular views on one source, field mappings, errors), validate for every view before writing
any, and follow ``feast apply`` at the registry refresh, including while pushes run."""

from __future__ import annotations

import asyncio
import shutil
import threading
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, List

import pandas as pd
import pytest
from feast import FeatureStore, FeatureView, Field
from feast.data_source import PushMode
from feast.errors import PushSourceNotFoundException
from feast.types import Int32, Int64

import feast_sequence
from feast_sequence import SequenceInputError
from feast_sequence.online.provider import sequence_provider

import multi_view_repo
from conftest import sequence_key_count
from redis_state import everything, stored
from repos import wait_until


def pushes(how: str) -> Callable[..., None]:
    """``push(store, source, frames, **options)``: each frame pushed in turn, by ``feast_sequence.push``
    or by ``push_async`` on one event loop (the async Redis client lives on its loop)."""

    def sync(store: FeatureStore, source: str, frames: List[pd.DataFrame], **options: Any) -> None:
        for frame in frames:
            feast_sequence.push(store, source, frame, **options)

    async def each(store: FeatureStore, source: str, frames: List[pd.DataFrame], **options: Any) -> None:
        for frame in frames:
            await feast_sequence.push_async(store, source, frame, **options)

    return sync if how == "sync" else lambda *args, **options: asyncio.run(each(*args, **options))


PUSHES = ["sync", "async"]


def feast_pushes(store: FeatureStore, source: str, frames: List[pd.DataFrame], **options: Any) -> None:
    for frame in frames:
        store.push(source, frame, **options)


def offline_rows(data: Path) -> pd.DataFrame:
    return pd.read_parquet(data / "events.parquet").sort_values(["user_id", "small"]).reset_index(drop=True)


def frames() -> List[pd.DataFrame]:
    """Two users, two events, one repeated: fixed timestamps so both runs write the same thing."""
    ts = pd.Timestamp("2024-03-01", tz="UTC")
    return [
        pd.DataFrame(
            {
                "user_id": [1, 2],
                "item": ["a", "b"],
                "small": [i, i + 10],
                "total": [i, i + 1],
                "ts": [ts + timedelta(seconds=i), ts],
            }
        )
        for i in (1, 2, 2)
    ]


@pytest.mark.parametrize("mode", [PushMode.ONLINE, PushMode.OFFLINE, PushMode.ONLINE_AND_OFFLINE], ids=str)
@pytest.mark.parametrize("how", PUSHES)
def test_the_fast_push_writes_what_store_push_writes(make_store, tmp_path, redis_client, mode, how):
    data = tmp_path / "data_files"
    store = make_store(multi_view_repo.objects(data))
    empty = tmp_path / "empty.parquet"
    shutil.copy(data / "events.parquet", empty)

    results = []
    for push in (feast_pushes, pushes(how)):
        redis_client.flushall()
        shutil.copy(empty, data / "events.parquet")
        push(store, "events_push", frames(), to=mode)
        results.append((everything(redis_client), offline_rows(data)))
    (feast_online, feast_offline), (ours_online, ours_offline) = results

    assert ours_online == feast_online
    pd.testing.assert_frame_equal(ours_offline, feast_offline)
    written_online = mode != PushMode.OFFLINE
    assert (sequence_key_count(redis_client) == 4) is written_online  # 2 sequence views x 2 users
    assert len(ours_offline) == (0 if mode == PushMode.ONLINE else 3 * 3 * 2)  # 3 views x 3 frames x 2 rows


@pytest.mark.parametrize("how", PUSHES)
def test_field_mappings_are_applied_as_store_push_applies_them(make_store, tmp_path, redis_client, how):
    store = make_store(multi_view_repo.mapped_objects(tmp_path / "data_files"))
    frame = pd.DataFrame({"uid": [7], "item": ["x"], "ts": [pd.Timestamp("2024-03-01", tz="UTC")]})
    redis_client.flushall()  # both runs start from the same empty Redis
    store.push("mapped_push", frame)
    feast_state = everything(redis_client)
    redis_client.flushall()
    pushes(how)(store, "mapped_push", [frame])
    assert everything(redis_client) == feast_state
    assert sequence_key_count(redis_client) == 1
    assert len(feast_state) >= 2  # the sequence and the regular view's hash


@pytest.mark.parametrize("how", PUSHES)
def test_an_unknown_push_source_raises_what_store_push_raises(make_store, tmp_path, how):
    store = make_store(multi_view_repo.objects(tmp_path / "data_files"))
    with pytest.raises(PushSourceNotFoundException, match="'no_such_push'"):
        store.push("no_such_push", multi_view_repo.frame(small=1))
    with pytest.raises(PushSourceNotFoundException, match="'no_such_push'"):
        pushes(how)(store, "no_such_push", [multi_view_repo.frame(small=1)])


@pytest.mark.parametrize("values", multi_view_repo.BAD.values(), ids=list(multi_view_repo.BAD))
@pytest.mark.parametrize("how", PUSHES)
def test_a_value_bad_for_any_view_writes_no_view(make_store, tmp_path, redis_client, values, how):
    store = make_store(multi_view_repo.objects(tmp_path / "data_files"))
    with pytest.raises((SequenceInputError, ValueError, TypeError)):
        pushes(how)(store, "events_push", [multi_view_repo.frame(**values)])
    assert stored(redis_client) == 0
    pushes(how)(store, "events_push", [multi_view_repo.frame(small=1)])
    assert sequence_key_count(redis_client) == 2


def test_an_empty_frame_writes_nothing_with_feasts_warning(make_store, tmp_path, redis_client):
    store = make_store(multi_view_repo.objects(tmp_path / "data_files"))
    with pytest.warns(UserWarning, match="empty dataframe"):
        feast_sequence.push(store, "events_push", multi_view_repo.frame(small=1).iloc[:0])
    assert stored(redis_client) == 0


def test_the_index_is_kept_across_pushes_and_rebuilt_by_an_apply(make_store, tmp_path):
    store = make_store(multi_view_repo.objects(tmp_path / "data_files"))
    views = sequence_provider(store).push_views(store.registry)
    first = views.resolve("events_push")
    assert views.resolve("events_push") is first  # no per-call rebuild
    FeatureStore(repo_path=str(store.repo_path)).apply([_extra_view(tmp_path)])
    store.refresh_registry()
    assert {v.name for v in views.resolve("events_push").views} == {"items", "smalls", "totals", "extra"}


def _extra_view(tmp_path: Path) -> FeatureView:
    source = next(o for o in multi_view_repo.objects(tmp_path / "data_files") if o.name == "totals").stream_source
    return FeatureView(
        name="extra", entities=[multi_view_repo.user], source=source, schema=[Field(name="total", dtype=Int64)]
    )


def test_an_apply_takes_effect_at_the_next_refresh_while_pushes_run(make_store, tmp_path, redis_client):
    """Another process applies (adds a view, removes one, changes one) while this one pushes in
    threads and refreshes its registry as `feast serve` does, the refreshes racing the pushes; no
    push fails, and after the refresh each push writes exactly the views the registry now holds.

    The pushes pause while the registry file is being written: Feast's file registry store
    rewrites it in place, and a read racing that write can see a partial registry (Feast's own
    `store.push` then fails too, with PushSourceNotFoundException or KeyError; see docs/ingest.md).
    """
    store = make_store(multi_view_repo.objects(tmp_path / "data_files"))
    other = FeatureStore(repo_path=str(store.repo_path))
    errors: List[BaseException] = []
    stop = threading.Event()
    writing_registry = threading.Lock()
    pushed: List[int] = []  # users of the pushes done

    def pusher(user: int) -> None:
        while not stop.is_set():
            frame = multi_view_repo.frame(small=1).assign(user_id=[user])
            try:
                with writing_registry:
                    feast_sequence.push(store, "events_push", frame)
                pushed.append(user)
            except BaseException as error:  # noqa: B036 - reported below
                errors.append(error)
                return

    threads = [threading.Thread(target=pusher, args=(100 + i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        objects = multi_view_repo.objects(tmp_path / "data_files")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            removed = [o for o in objects if o.name == "smalls"]
            for apply in (
                lambda: other.apply([_extra_view(tmp_path)]),  # add a view
                lambda: other.apply([], objects_to_delete=removed, partial=False),  # remove one
                lambda: other.apply([_changed_totals(objects)]),  # change one: a second feature
            ):
                with writing_registry:
                    apply()
                done = len(pushed)  # pushes run on the old version...
                wait_until(
                    lambda d=done: len(pushed) >= d + 4 or bool(errors), 30, "pushes on the old registry version"
                )
                store.refresh_registry()  # ...and race the refresh
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert errors == []

    redis_client.flushall()
    feast_sequence.push(store, "events_push", multi_view_repo.frame(small=3, total=2))
    assert sequence_key_count(redis_client) == 1  # 'items' only: 'smalls' is gone
    rows = store.get_online_features(["extra:total", "totals:small"], [{"user_id": 1}]).to_dict()
    assert rows["total"] == [2] and rows["small"] == [3]


def _changed_totals(objects: List[Any]) -> FeatureView:
    totals = next(o for o in objects if o.name == "totals")
    return FeatureView(
        name="totals",
        entities=[multi_view_repo.user],
        source=totals.stream_source,
        schema=[Field(name="total", dtype=Int64), Field(name="small", dtype=Int32)],
        ttl=timedelta(0),
    )


@pytest.mark.parametrize("how", PUSHES)
def test_an_online_and_offline_push_the_offline_store_would_refuse_writes_nothing(
    make_store, tmp_path, redis_client, how
):
    """Issue 22, case 8: the offline columns are checked before the online write, not after it."""
    data = tmp_path / "data_files"
    store = make_store(multi_view_repo.objects(data))
    redis_client.flushall()
    before = offline_rows(data)
    bad = multi_view_repo.frame(small=1).assign(note="x")  # the online views ignore it; the offline store refuses it
    with pytest.raises(
        SequenceInputError, match=r"missing \[\], extra \['note'\]\. Nothing was written, online or offline"
    ):
        pushes(how)(store, "events_push", [bad], to=PushMode.ONLINE_AND_OFFLINE)
    assert sequence_key_count(redis_client) == 0 and stored(redis_client) == 0
    pd.testing.assert_frame_equal(offline_rows(data), before)


def stored_row() -> pd.DataFrame:
    return frames()[0].astype({"small": "int32"})


@pytest.mark.parametrize("how", PUSHES)
def test_an_offline_write_failing_after_the_online_one_says_what_was_written(make_store, tmp_path, redis_client, how):
    data = tmp_path / "data_files"
    store = make_store(multi_view_repo.objects(data))
    redis_client.flushall()
    source = data / "events.parquet"
    # A source whose rows are damaged but whose footer (the schema) is not: the checks pass, and the
    # offline store's write, which reads the rows it appends to, fails.
    pd.read_parquet(source).pipe(lambda empty: pd.concat([empty, stored_row()])).to_parquet(source)
    damaged = bytearray(source.read_bytes())
    damaged[4:40] = b"\xff" * 36
    source.write_bytes(bytes(damaged))
    with pytest.raises(
        feast_sequence.PartialPushError, match=r"written online to views \['items', 'smalls', 'totals'\]"
    ):
        pushes(how)(store, "events_push", [multi_view_repo.frame(small=1)], to=PushMode.ONLINE_AND_OFFLINE)
    assert sequence_key_count(redis_client) == 2
