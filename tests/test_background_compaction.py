"""Compaction after the push answered (online/background_compaction.py), on a real Redis: the push
returns after its append, the worker compacts later, a tail is still bounded, and a failed background
compaction is counted, logged and raised by the next push (which writes nothing) or by a drain."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pandas as pd
import pytest
from feast import Entity, FileSource, PushSource, ValueType
from feast.data_format import ParquetFormat
from feast.field import Field
from feast.types import String

from feast_sequence import SequenceFeatureView, sequence_settings
from feast_sequence.errors import SequenceStoreError, SequenceStoreUnavailableError
from feast_sequence.feast_internals import store_provider
from feast_sequence.online.background_compaction import BackgroundCompactions, compact_inline_from
from feast_sequence.serving import metrics
from feast_sequence.storage.append import tails_to_compact

from repos import applied_store, sequence_online

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
COMPACT_AFTER = 4


def _store(tmp_path, redis_server, **online):
    repo = tmp_path / uuid.uuid4().hex[:8]
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    batch = FileSource(path=str(repo / "clicks.parquet"), file_format=ParquetFormat(), timestamp_field="ts")
    push = PushSource(name="clicks_push", batch_source=batch)
    view = SequenceFeatureView(
        name="clicks", entities=[user], source=push, schema=[Field(name="item", dtype=String)], max_length=100
    )
    options = dict(compact_after=COMPACT_AFTER, **online)
    return applied_store(
        repo, "p" + repo.name, sequence_online(redis_server.connection_string, **options), [user, push, view]
    )


def _events(user, start, count):
    return pd.DataFrame(
        {
            "user_id": [user] * count,
            "item": [f"i{start + k}" for k in range(count)],
            "ts": [T0 + timedelta(seconds=start + k) for k in range(count)],
        }
    )


def _blocks(redis_client):
    return sorted(redis_client.scan_iter(match=b"fsq:*}:c"))


def _served(store, user):
    return store.get_online_features(features=["clicks:item"], entity_rows=[{"user_id": user}]).to_dict()["item"][0]


def _online(store):
    return store_provider(store).online_store


class _Gate:
    """The store's client, handed to the worker only once opened: holds a compaction back."""

    def __init__(self, client_for):
        self.client_for, self.open = client_for, threading.Event()

    def __call__(self, online_config):
        assert self.open.wait(60), "the test never opened the gate"
        return self.client_for(online_config)


def test_the_push_answers_before_its_compaction_which_the_worker_then_does(tmp_path, redis_server, redis_client):
    redis_client.flushall()
    store = _store(tmp_path, redis_server)
    online = _online(store)
    gate = _Gate(online._get_client)
    online.compactions = BackgroundCompactions(gate)
    store.push("clicks_push", _events(1, 0, COMPACT_AFTER))  # the tail reaches compact_after
    assert _blocks(redis_client) == []  # answered with the compaction still held back
    assert _served(store, 1) == [f"i{k}" for k in reversed(range(COMPACT_AFTER))]
    gate.open.set()
    online.drain_compactions(timeout_seconds=60)
    assert len(_blocks(redis_client)) == 1
    assert redis_client.zcard(_blocks(redis_client)[0][:-1] + b"z") == 0  # the tail went into the block
    assert _served(store, 1) == [f"i{k}" for k in reversed(range(COMPACT_AFTER))]


def test_a_tail_at_twice_the_threshold_is_compacted_before_the_push_answers(tmp_path, redis_server, redis_client):
    redis_client.flushall()
    store = _store(tmp_path, redis_server)
    online = _online(store)
    gate = _Gate(online._get_client)
    online.compactions = BackgroundCompactions(gate)
    store.push("clicks_push", _events(2, 0, COMPACT_AFTER))  # queued, held back
    assert _blocks(redis_client) == []
    store.push("clicks_push", _events(2, COMPACT_AFTER, COMPACT_AFTER))  # now 2 x compact_after: inline
    assert len(_blocks(redis_client)) == 1
    gate.open.set()
    online.drain_compactions(timeout_seconds=60)  # the late compaction finds nothing left to merge
    assert _served(store, 2) == [f"i{k}" for k in reversed(range(2 * COMPACT_AFTER))]


def test_compact_in_background_false_compacts_before_the_push_answers(tmp_path, redis_server, redis_client):
    redis_client.flushall()
    store = _store(tmp_path, redis_server, compact_in_background=False)
    store.push("clicks_push", _events(3, 0, COMPACT_AFTER))
    assert len(_blocks(redis_client)) == 1


@dataclass
class _FailingWorker:
    """A store whose compaction worker fails, and its view's compaction error counter at the start."""

    store: Any
    online: Any
    errors_before: float

    def errors_counted(self) -> float:
        return metrics.COMPACTION_ERRORS.labels("clicks")._value.get() - self.errors_before


@pytest.fixture
def failing_worker(tmp_path, redis_server, redis_client) -> Callable[[Exception], _FailingWorker]:
    """A store on an emptied Redis whose compaction worker raises ``error`` instead of connecting."""

    def start(error: Exception) -> _FailingWorker:
        redis_client.flushall()
        store = _store(tmp_path, redis_server)
        online = _online(store)

        def failing(online_config):
            raise error

        online.compactions = BackgroundCompactions(failing)
        return _FailingWorker(store, online, metrics.COMPACTION_ERRORS.labels("clicks")._value.get())

    return start


def test_a_failed_background_compaction_is_counted_and_raised_by_the_next_push_which_writes_nothing(
    failing_worker, redis_client
):
    worker = failing_worker(ConnectionError("Redis went away"))
    store, online = worker.store, worker.online
    store.push("clicks_push", _events(4, 0, COMPACT_AFTER))
    with pytest.raises(SequenceStoreError, match="Background compaction of 1 sequence.*'clicks' failed"):
        online.compactions.drain(timeout_seconds=60)  # drain raises it ...
    assert worker.errors_counted() == 1
    store.push("clicks_push", _events(4, COMPACT_AFTER, 1))  # ... once: the tail is intact, queued again
    with online.compactions._ready:  # the worker failed again
        assert online.compactions._ready.wait_for(lambda: online.compactions._failure is not None, 60)
    with pytest.raises(SequenceStoreError, match="ConnectionError: Redis went away.*This push wrote nothing"):
        store.push("clicks_push", _events(4, 100, 1))  # the next push raises it, before writing
    assert "i100" not in _served(store, 4)
    assert _blocks(redis_client) == []


def test_only_tails_under_the_hard_bound_are_left_to_the_worker(tmp_path, redis_server):
    store = _store(tmp_path, redis_server)
    settings = sequence_settings(store.get_feature_view("clicks"))
    bound = compact_inline_from(settings, COMPACT_AFTER)
    assert bound == 2 * COMPACT_AFTER
    commands = [("EVALSHA", "sha", 5, f"k{k}z", f"k{k}h", f"k{k}c") for k in range(3)]
    replies = [[COMPACT_AFTER - 1, 0], [COMPACT_AFTER, 0], [bound, 0]]
    assert tails_to_compact(settings, commands, replies, COMPACT_AFTER) == [
        ("k1z", "k1h", "k1c"),
        ("k2z", "k2h", "k2c"),
    ]
    assert tails_to_compact(settings, commands, replies, COMPACT_AFTER, below=bound) == [("k1z", "k1h", "k1c")]


def test_an_outage_met_by_the_worker_is_counted_but_does_not_fail_a_push_made_after_it(failing_worker, redis_client):
    """Redis unreachable is raised by the pushes made during the outage; a push made after it
    must not fail for a compaction missed then (its writer would re-send stored events)."""
    worker = failing_worker(SequenceStoreUnavailableError("Redis could not be reached (test)"))
    store, online = worker.store, worker.online
    store.push("clicks_push", _events(5, 0, COMPACT_AFTER))
    online.compactions.drain(timeout_seconds=60)  # nothing to raise
    assert worker.errors_counted() == 1  # but counted (and logged)
    online.compactions = BackgroundCompactions(online._get_client)  # Redis is back
    store.push("clicks_push", _events(5, COMPACT_AFTER, 1))  # writes, and queues the tail again
    online.drain_compactions(timeout_seconds=60)
    assert len(_blocks(redis_client)) == 1
    assert _served(store, 5) == [f"i{k}" for k in reversed(range(COMPACT_AFTER + 1))]
