"""Push figures for `make bench` (issue 17): a one-event push as the registry grows, by
``feast_sequence.push`` beside Feast's ``store.push`` in the same run, over HTTP through
`feast-sequence serve`, and push-to-visible freshness. Real Redis; filler regular views on another
push source are what grows the registry.

    .venv/bin/python tests/benchmarks/push_benchmarks.py   # alone, on a private redis-server
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Callable, Dict, List

import pandas as pd
from feast import FeatureStore, FeatureView, Field, PushSource
from feast.types import Float32, Int64, String

import feast_sequence
from feast_sequence import SequenceFeatureView
from feast_sequence.testing.local_redis import LocalRedis

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/benchmarks, for the load client
from http_load import Stream, post, run_load, workers_cpu_seconds  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the repository builder
from feast_server import feast_sequence_serve  # noqa: E402
from repos import push_source, sequence_online, user, write_repo  # noqa: E402

VIEW_COUNTS = (1, 51, 201)
SAMPLES = 300
FEAST_SAMPLES = {1: 200, 51: 60, 201: 20}
HTTP_SECONDS = 5.0
HTTP_CONNECTIONS = 8
HTTP_MAX_PUSHES = 40_000  # a bound besides time (and the bodies built before the run)
HTTP_WARMUP_PUSHES = 500
FRESHNESS_SAMPLES = 300


def _source(name: str, data: Path) -> PushSource:
    return push_source(name, data, {"user_id": "int64", "item_id": "string", "price": "float32"})


def repository(root: Path, connection: str) -> FeatureStore:
    repo = write_repo(root / "push_repo", "pushbench", sequence_online(connection))
    clicks = SequenceFeatureView(
        name="clicks",
        entities=[user],
        source=_source("clicks", repo / "data"),
        schema=[Field(name="item_id", dtype=String), Field(name="price", dtype=Float32)],
        max_length=100,
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([user, clicks])
    return store


def add_fillers(store: FeatureStore, start: int, stop: int) -> None:
    source = _source("filler", Path(store.repo_path) / "data")
    store.apply(
        [
            FeatureView(
                name=f"filler_{i}",
                entities=[user],
                source=source,
                schema=[Field(name="price", dtype=Float32), Field(name="n", dtype=Int64)],
                ttl=timedelta(0),
            )
            for i in range(start, stop)
        ]
    )


def event(i: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [i % 1000],
            "item_id": [f"item_{i % 5000:05d}"],
            "price": [1.5],
            "ts": [pd.Timestamp("2024-01-01", tz="UTC") + timedelta(milliseconds=i)],
        }
    )


def event_body(i: int) -> Dict[str, object]:
    """``event(i)`` as a /push request body."""
    ts = pd.Timestamp("2024-01-01", tz="UTC") + timedelta(milliseconds=i)
    return {
        "push_source_name": "clicks_push",
        "df": {"user_id": [i % 1000], "item_id": [f"item_{i % 5000:05d}"], "price": [1.5], "ts": [ts.isoformat()]},
        "to": "online",
    }


def p50_ms(push: Callable[[pd.DataFrame], object], samples: int, offset: int) -> float:
    times = []
    for i in range(samples):
        frame = event(offset + i)
        start = time.perf_counter()
        push(frame)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def http_rate(repo: Path, env: Dict[str, str]) -> Dict[str, float]:
    """One-event pushes per second through `feast-sequence serve` (one worker), ``HTTP_CONNECTIONS``
    keep-alive connections each sending its next push when the last is answered; the worker's CPU
    milliseconds per push, which does not depend on how busy the machine or the client is; and the
    share of the run the worker was on a CPU (near 1: the server is the bound, not the client).

    The client is `http_load.py` (asyncio streams, no HTTP library) sending bodies built before the
    run: it costs a fraction of the server's CPU per push, where 8 threads of ``http.client`` in
    one process (one GIL) cost about as much as the server and bounded the figure."""
    bodies = [post("/push", event_body(i)) for i in range(HTTP_WARMUP_PUSHES + HTTP_MAX_PUSHES)]
    warmup, timed = iter(bodies[:HTTP_WARMUP_PUSHES]).__next__, iter(bodies[HTTP_WARMUP_PUSHES:]).__next__
    with feast_sequence_serve(repo, "--workers", "1", "--max-requests", "0", env=env) as port:
        run_load([Stream(port, warmup, HTTP_CONNECTIONS)], 60, HTTP_WARMUP_PUSHES)
        cpu_before = workers_cpu_seconds(port)
        (tally,) = run_load([Stream(port, timed, HTTP_CONNECTIONS)], HTTP_SECONDS, HTTP_MAX_PUSHES)
        worker_seconds = workers_cpu_seconds(port) - cpu_before
    pushes = len(tally.latencies)
    return {
        "http_push_events_per_s": pushes / tally.seconds,
        "http_push_worker_cpu_ms": worker_seconds * 1000 / pushes,
        "http_push_worker_busy": worker_seconds / tally.seconds,
        "http_push_p50_ms": statistics.median(tally.latencies) * 1000,
    }


def freshness_p99_ms(store: FeatureStore, reader: FeatureStore) -> float:
    """From the start of a push to the event being served to another client (its own FeatureStore)."""
    delays: List[float] = []
    for i in range(FRESHNESS_SAMPLES):
        frame = event(50_000_000 + i).assign(user_id=[5_000_000 + i], item_id=[f"fresh_{i}"])
        start = time.perf_counter()
        feast_sequence.push(store, "clicks_push", frame)
        while True:
            seen = reader.get_online_features(["clicks:item_id"], [{"user_id": 5_000_000 + i}]).to_dict()
            if seen["item_id"][0] and seen["item_id"][0][0] == f"fresh_{i}":
                break
        delays.append(time.perf_counter() - start)
    return statistics.quantiles(delays, n=100)[98] * 1000


def run(connection: str) -> Dict[str, float]:
    results: Dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = repository(Path(tmp), connection)
        views = 1
        ours: Dict[int, float] = {}
        feasts: Dict[int, float] = {}
        for count in VIEW_COUNTS:
            if count > views:
                add_fillers(store, views - 1, count - 1)
            views = count
            pushing = FeatureStore(repo_path=str(store.repo_path))  # a process that did not apply
            feast_sequence.push(pushing, "clicks_push", event(0))  # warm: clients, scripts, the index
            pushing.push("clicks_push", event(0))
            ours[count] = p50_ms(lambda f, s=pushing: feast_sequence.push(s, "clicks_push", f), SAMPLES, count * 10_000)
            feasts[count] = p50_ms(lambda f, s=pushing: s.push("clicks_push", f), FEAST_SAMPLES[count], count * 20_000)
            results[f"push_single_p50_ms_by_views.{count}"] = ours[count]
            results[f"feast_push_single_p50_ms_by_views.{count}"] = feasts[count]
            if count == 51:
                results["freshness_51_views_p99_ms"] = freshness_p99_ms(
                    pushing, FeatureStore(repo_path=str(store.repo_path))
                )
                results.update(http_rate(Path(str(store.repo_path)), dict(os.environ)))
        results["push_single_views_ratio"] = ours[201] / ours[1]
        results["feast_push_single_views_ratio"] = feasts[201] / feasts[1]
        results["push_single_51_views_ratio"] = ours[51] / feasts[51]
    return results


if __name__ == "__main__":
    with LocalRedis() as redis:
        for key, value in run(redis.connection_string).items():
            print(f"{key:40} {value:12.3f}")
