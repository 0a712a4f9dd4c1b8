"""Concurrent writers (processes and threads) for the same users lose nothing and agree with the reference."""

from __future__ import annotations

import multiprocessing
import os
import threading
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from sample_repo import random_clicks

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def make_events(n: int, seed: int) -> pd.DataFrame:
    return random_clicks(np.random.default_rng(seed), n, 5, 40, 100, [1.0, 2.5], T0, 30)


def writer_process(repo_path: str, connection: str, frames: list, reading: list) -> None:
    """Push ``frames`` from two threads, once every reader is reading (``reading``: their events)."""
    from feast import FeatureStore

    os.environ["FEAST_SEQUENCE_REDIS"] = connection
    store = FeatureStore(repo_path=repo_path)
    for r in reading:  # a spawned reader importing Feast on a loaded machine could start after the writes
        assert r.wait(600), "a reader never read"
    threads = [
        threading.Thread(target=lambda part=part: [store.push("clicks_push", f) for f in part])
        for part in (frames[0::2], frames[1::2])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def reader_process(repo_path: str, connection: str, reading, stop, results) -> None:
    """Read all users in a loop while writers run; count reads and invariant violations. ``reading``
    is set once the first reads are done, ``stop`` ends the loop."""
    from feast import FeatureStore

    os.environ["FEAST_SEQUENCE_REDIS"] = connection
    store = FeatureStore(repo_path=repo_path)
    reads, violations = 0, []
    while not stop.is_set():
        for view in ("clicks", "clicks_dedup"):
            out = store.get_online_features(
                features=[f"{view}:item", f"{view}:ts"], entity_rows=[{"user_id": u} for u in range(5)]
            ).to_dict()
            for items, times in zip(out["item"], out["ts"]):
                reads += 1
                if len(items) > 5 or len(items) != len(times):
                    violations.append((view, "length", items))
                if any(a < b for a, b in zip(times, times[1:])):
                    violations.append((view, "order", times))
                if view == "clicks_dedup" and len(set(items)) != len(items):
                    violations.append((view, "duplicate identity", items))
        reading.set()
    results.put((reads, violations[:10]))


def test_processes_and_threads_writing_the_same_users(make_store, tmp_path, redis_server):
    from sample_repo import assert_clicks_match_reference, objects

    store = make_store(objects(tmp_path / "events"))
    events = make_events(4000, seed=3)
    frames = [events.iloc[i : i + 100] for i in range(0, len(events), 100)]
    ctx = multiprocessing.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    reading = [ctx.Event() for _ in range(2)]
    readers = [
        ctx.Process(
            target=reader_process, args=(str(store.repo_path), redis_server.connection_string, r, stop, results)
        )
        for r in reading
    ]
    processes = [
        ctx.Process(
            target=writer_process, args=(str(store.repo_path), redis_server.connection_string, frames[p::4], reading)
        )
        for p in range(4)
    ]
    for p in readers + processes:
        p.start()
    try:
        for p in processes:
            p.join(600)  # generous: spawned writers import Feast, and a loaded machine takes minutes
            assert p.exitcode == 0
    finally:
        stop.set()  # the readers end, even when the test fails
    observed = [results.get(timeout=600) for _ in readers]
    for p in readers:
        p.join(60)
    assert all(reads > 0 for reads, _ in observed), observed
    assert [v for _, violations in observed for v in violations] == []

    assert_clicks_match_reference(store, [events], users=5)
