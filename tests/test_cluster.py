"""The same code on Redis Cluster: three local primaries; each sequence's keys share a hash slot,
so appends (Lua) and reads work across the cluster."""

from __future__ import annotations

import shutil
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from feast import FeatureStore

import serving_repo
from redis_cluster import local_cluster
from repos import applied_store, sequence_online
from sample_repo import assert_clicks_match_reference, batches, objects, random_clicks


@pytest.fixture(scope="module")
def cluster():
    # make test installs redis-server, which brings redis-cli: a missing one is a set-up error.
    assert shutil.which("redis-cli"), "redis-cli is missing; install redis-server (make test does)"
    with local_cluster() as servers:
        yield servers


def cluster_store(tmp_path: Path, servers, objects_: list) -> FeatureStore:
    online = sequence_online(",".join(s.connection_string for s in servers), redis_type="redis_cluster")
    return applied_store(tmp_path / "cluster", "c" + uuid.uuid4().hex[:6], online, objects_)


def test_push_and_read_on_a_three_node_cluster(tmp_path, cluster):
    store = cluster_store(tmp_path, cluster, objects(tmp_path / "events"))
    frames = batches(10, 60, seed=9)
    for frame in frames:
        store.push("clicks_push", frame)
    client = redis.RedisCluster(host="127.0.0.1", port=cluster[0].port)
    slots_used = {client.keyslot(k) for s in cluster for k in s.client().keys("fsq:*:{*")}
    assert len(slots_used) > 10  # the sequences really are spread over the cluster
    assert_clicks_match_reference(store, frames, users=20)


def test_many_entities_and_concurrent_writers_match_a_single_redis(tmp_path, cluster, make_store):
    """500 users over many slots, pushed by 4 threads at once, read back in one request: the same
    as the same pushes on one Redis."""
    frames = [_many_users(seed) for seed in range(8)]
    on_cluster = cluster_store(tmp_path, cluster, objects(tmp_path / "events"))
    single = make_store(objects(tmp_path / "single_events"), name="single")
    for store in (on_cluster, single):
        threads = [
            threading.Thread(target=lambda chunk=frames[i::4], s=store: [s.push("clicks_push", f) for f in chunk])
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    rows = [{"user_id": u} for u in range(500)]
    refs = ["clicks:item", "clicks:n", "clicks_dedup:item", "clicks_ttl:item"]
    got = on_cluster.get_online_features(features=refs, entity_rows=rows, full_feature_names=True).to_dict()
    want = single.get_online_features(features=refs, entity_rows=rows, full_feature_names=True).to_dict()
    assert got == want
    assert sum(1 for v in got["clicks__item"] if v) > 450


def test_use_cases_serve_the_same_on_a_cluster(tmp_path, cluster, make_store):
    """Serving-time lookups (one HMGET per key on a cluster) and index-time enrichment."""
    now = pd.Timestamp.now(tz="UTC")
    stores = [
        cluster_store(tmp_path, cluster, serving_repo.objects(tmp_path / "cluster_data")),
        make_store(serving_repo.objects(tmp_path / "single_data"), name="single"),
    ]
    clicks = serving_repo.clicks(300, 10, now, seed=5)
    clicks = clicks[((now - clicks["ts"]) - timedelta(days=30)).abs() > timedelta(hours=1)]
    outputs = []
    for store in stores:
        store.push("items_push", serving_repo.item_rows(30, now - pd.Timedelta(days=90)))
        store.push("clicks_push", clicks)
        rows = [{"user_id": u} for u in range(10)]
        outputs.append(
            [
                store.get_online_features(features=store.get_feature_service(name), entity_rows=rows).to_dict()
                for name in ("ranking", "ranking_indexed")
            ]
        )
    assert outputs[0] == outputs[1]
    assert any(t for row in outputs[0][0]["title"] for t in row)


def _many_users(seed: int) -> pd.DataFrame:
    recent = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=599)  # the last 10 minutes
    return random_clicks(np.random.default_rng(seed), 400, 500, 15, 5, [1.0, 2.0], recent, 600)
