"""Erase figures for `make bench` (issue 27): erasing 10,000 entities in one call, and what 10,000
erasure markers cost a one-event push. Two repositories on one Redis, alike but for the markers;
their pushes alternate, so machine noise hits both. Every pushed entity has a marker (dated before
its events, which are kept): the worst case, where the append script reads a marker that exists.

    .venv/bin/python tests/benchmarks/erase_benchmarks.py   # alone, on a private redis-server
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
from feast import FeatureStore, Field
from feast.types import Float32, String

import feast_sequence
from feast_sequence import SequenceFeatureView
from feast_sequence.testing.local_redis import LocalRedis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the repository builder
from repos import push_source, sequence_online, user, write_repo  # noqa: E402

ENTITIES = 10_000
EVENTS_PER_ENTITY = 10
PUSH_SAMPLES = 2_000
T0 = pd.Timestamp("2024-01-01", tz="UTC")
RNG_SEED = 20261207


def repository(root: Path, project: str, connection: str) -> FeatureStore:
    repo = write_repo(root / project, project, sequence_online(connection))
    clicks = SequenceFeatureView(
        name="clicks",
        entities=[user],
        source=push_source("clicks", repo / "data", {"user_id": "int64", "item_id": "string", "price": "float32"}),
        schema=[Field(name="item_id", dtype=String), Field(name="price", dtype=Float32)],
        max_length=100,
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([user, clicks])
    return store


def events(users: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": users.astype("int64"),
            "item_id": [f"item_{i % 5000:05d}" for i in range(len(users))],
            "price": np.float32(1.5),
            "ts": start + pd.to_timedelta(np.arange(len(users)), unit="ms"),
        }
    )


def run(connection: str) -> Dict[str, float]:
    rng = np.random.default_rng(RNG_SEED)
    results: Dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        erased = repository(Path(tmp), "erasebench", connection)
        users = np.repeat(np.arange(ENTITIES), EVENTS_PER_ENTITY)
        feast_sequence.push(erased, "clicks_push", events(users, T0 - timedelta(days=1)))
        start = time.perf_counter()
        entities = [{"user_id": int(u)} for u in range(ENTITIES)]
        before = (T0 - timedelta(minutes=1)).to_pydatetime()
        result = feast_sequence.erase(erased, entities, before=before, by="bench")
        results["erase_entities_per_s"] = ENTITIES / (time.perf_counter() - start)
        assert result.events_erased == ENTITIES * EVENTS_PER_ENTITY, result

        # Markers dated before the events pushed below: read and passed, never dropping.
        bare = repository(Path(tmp), "barebench", connection)
        stores = {"markers": erased, "none": bare}
        for store in stores.values():
            feast_sequence.push(store, "clicks_push", events(np.arange(100), T0))  # warm: clients, scripts
        times: Dict[str, List[float]] = {name: [] for name in stores}
        pushed = rng.integers(0, ENTITIES, PUSH_SAMPLES)
        for i, u in enumerate(pushed):
            frame = events(np.array([u]), T0 + timedelta(seconds=1 + i))
            order = ("markers", "none") if i % 2 else ("none", "markers")
            for name in order:
                began = time.perf_counter()
                feast_sequence.push(stores[name], "clicks_push", frame)
                times[name].append(time.perf_counter() - began)
        p50 = {name: statistics.median(t) * 1000 for name, t in times.items()}
        results["push_single_p50_ms_by_markers.10000"] = p50["markers"]
        results["push_single_p50_ms_by_markers.0"] = p50["none"]
        # Not `push_single_p50_ratio` alone: that key is the online part's (ours against Feast's store).
        results["push_single_p50_ratio.markers_10000"] = p50["markers"] / p50["none"]
    return results


if __name__ == "__main__":
    with LocalRedis() as redis:
        for key, value in run(redis.connection_string).items():
            print(f"{key:40} {value:12.3f}")
