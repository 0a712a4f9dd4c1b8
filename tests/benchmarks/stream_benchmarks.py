"""Streaming figures for `make bench`: the streaming indexer's sustained rate (JSON files landing in a
folder, Spark's file source) beside the batch writer on the same events, and the delay from an event
file landing to its event being served. Real Spark in local mode, real Redis.

    .venv/bin/python tests/benchmarks/stream_benchmarks.py   # alone, on a private redis-server
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pandas as pd
from feast import FeatureStore

from feast_sequence.offline.indexing import write_spark
from feast_sequence.transformations._job import open_view
from feast_sequence.transformations.streaming import FileStream, event_schema, job_spark_session, run_stream

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the repository builder
from repos import PURCHASE_FIELDS, push_source, sequence_online, sequence_views, spark_offline, user, write_repo  # noqa: E402

SEED = 20261125
RATE_EVENTS = 200_000
RATE_FILES = 20  # 10,000 events each
RATE_FILES_PER_BATCH = 5  # micro-batches of 50,000 events
RATE_USERS = 100_000  # Zipf(1) activity, as in the offline benchmark
TRIGGER_SECONDS = 0.5
DELAY_SAMPLES = 100
POLL_SECONDS = 0.005


def repository(root: Path, connection: str) -> FeatureStore:
    repo = root / "stream_repo"
    conf = {"spark.driver.memory": "8g", "spark.sql.shuffle.partitions": "8"}
    write_repo(repo, "stream_bench", sequence_online(connection), spark_offline(**conf))
    # the batch source: unused by the stream
    source = push_source(
        "events", repo / "data", {"user_id": "int64", "item_id": "string", "quantity": "int64", "price": "float32"}
    )
    # Two identical views: the stream writes one, the batch-writer baseline the other.
    views = sequence_views(
        {"events": {}, "events_batch": {}}, entities=[user], source=source, schema=PURCHASE_FIELDS, max_length=50
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([user, *views])
    return store


def event_lines(rng: np.random.Generator, users: np.ndarray, first_item: int = 0) -> List[str]:
    """JSON events, one a line (the format a Kafka topic would carry in its values)."""
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**13, len(users)), unit="us")
    return [
        json.dumps(
            {
                "user_id": int(u),
                "item_id": f"item_{first_item + i}",
                "quantity": int(q),
                "price": float(p),
                "ts": t.isoformat(),
            }
        )
        for i, (u, q, p, t) in enumerate(zip(users, rng.integers(1, 20, len(users)), rng.random(len(users)) * 30, ts))
    ]


def zipf_users(rng: np.random.Generator, users: int, n: int) -> np.ndarray:
    """floor(users^u) - 1 for uniform u: P(k) ~ 1/(k+1), as offline_benchmarks.zipf_user."""
    return (np.floor(np.power(float(users), rng.random(n))) - 1).astype(np.int64)


def land(lines: List[str], folder: Path, name: str) -> None:
    staging = folder.parent / f".{folder.name}-staging"
    staging.mkdir(exist_ok=True)
    (staging / name).write_text("\n".join(lines) + "\n")
    os.replace(staging / name, folder / name)


def sustained_rate(root: Path, store: FeatureStore, spark: Any, rng: np.random.Generator) -> Dict[str, float]:
    """Available-now over RATE_EVENTS events already landed; the first micro-batch (Python
    workers starting) is left out of the sustained rate."""
    landing = root / "rate"
    landing.mkdir()
    per_file = RATE_EVENTS // RATE_FILES
    files = [zipf_users(rng, RATE_USERS, per_file) for _ in range(RATE_FILES)]
    for position, users in enumerate(files):
        land(event_lines(rng, users, position * per_file), landing, f"{position}.json")
    # The store makes one script call per entity of a write, so what a micro-batch costs depends
    # on how many distinct entities it holds, not only on how many events.
    entities = [
        len(np.unique(np.concatenate(files[i : i + RATE_FILES_PER_BATCH])))
        for i in range(0, RATE_FILES, RATE_FILES_PER_BATCH)
    ]
    context = open_view(str(store.repo_path), "events")
    start = time.perf_counter()
    stream = run_stream(
        context,
        spark,
        FileStream(str(landing), "json", RATE_FILES_PER_BATCH),
        str(root / "rate-checkpoint"),
        available_now=True,
    )
    stream.wait()
    total_s = time.perf_counter() - start
    batches = sorted(stream.query.recentProgress, key=lambda p: p["batchId"])
    later = [b for b in batches if b["batchId"] > 0 and b["numInputRows"]]
    rows = sum(b["numInputRows"] for b in later)
    seconds = sum(b["durationMs"]["triggerExecution"] for b in later) / 1000

    # Baseline: the batch writer (what backfill uses) on the same files, read as one DataFrame,
    # into an identical view that is still empty.
    baseline = open_view(str(store.repo_path), "events_batch")
    static = spark.read.schema(event_schema(baseline.settings)).json(str(landing)).cache()
    static.count()
    # Warm up this thread's Python workers (the stream's are a pool of their own) on events the
    # stream has already written: a no-op for the store.
    write_spark(context.target, static.limit(1_000))
    batch_start = time.perf_counter()
    written = write_spark(baseline.target, static)
    batch_s = time.perf_counter() - batch_start
    static.unpersist()
    return {
        "stream_events": float(stream.progress.events_written),
        "stream_micro_batches": float(len(batches)),
        "stream_events_per_entity_in_batch": RATE_EVENTS / sum(entities),
        "stream_seconds_total": total_s,
        "stream_events_per_s": rows / seconds,
        "stream_batch_writer_events_per_s": written / batch_s,
        "stream_rate_ratio": (rows / seconds) / (written / batch_s),
    }


def delay(root: Path, store: FeatureStore, spark: Any, rng: np.random.Generator) -> Dict[str, float]:
    """One event per file, landed at random moments against a TRIGGER_SECONDS trigger; the delay
    runs from the rename into the folder to the event being served by get_online_features."""
    landing = root / "delay"
    landing.mkdir()
    stream = run_stream(
        open_view(str(store.repo_path), "events"),
        spark,
        FileStream(str(landing), "json"),
        str(root / "delay-checkpoint"),
        trigger_seconds=TRIGGER_SECONDS,
    )
    delays: List[float] = []
    try:
        for sample in range(-1, DELAY_SAMPLES):  # sample -1 warms the Python workers up
            user = 1_000_000 + sample + 1
            item = f"item_{10_000_000 + sample + 1}"
            line = event_lines(rng, np.array([user]), first_item=10_000_000 + sample + 1)[0]
            time.sleep(float(rng.uniform(0, TRIGGER_SECONDS)))
            landed = time.perf_counter()
            land([line], landing, f"{sample + 1}.json")
            while item not in (
                store.get_online_features(features=["events:item_id"], entity_rows=[{"user_id": user}]).to_dict()[
                    "item_id"
                ][0]
                or []
            ):
                time.sleep(POLL_SECONDS)
            if sample >= 0:
                delays.append(time.perf_counter() - landed)
    finally:
        stream.stop()
    ordered = sorted(delays)
    return {
        "stream_delay_p50_s": statistics.median(ordered),
        "stream_delay_p99_s": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "stream_delay_max_s": ordered[-1],
    }


def run(connection: str) -> Dict[str, float]:
    rng = np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = repository(root, connection)
        spark = job_spark_session(open_view(str(store.repo_path), "events"))
        results = sustained_rate(root, store, spark, rng)
        results.update(delay(root, store, spark, rng))
    return results


if __name__ == "__main__":
    from feast_sequence.testing.local_redis import LocalRedis

    with LocalRedis() as server:
        print(json.dumps(run(server.connection_string), indent=2))
