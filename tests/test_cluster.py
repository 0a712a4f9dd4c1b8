"""The same code on Redis Cluster: three local primaries; each sequence's keys share a hash slot,
so appends (Lua) and reads work across the cluster."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid

import pytest
import redis
from feast import FeatureStore

from conftest import feature_store_yaml
from feast_sequence.local_redis import LocalRedis
from sample_repo import assert_clicks_match_reference, objects
from test_reliability import batches


def cluster_port() -> int:
    """A free port whose cluster bus port (+10,000) is free too; Redis refuses ports over 55,535."""
    import random
    import socket

    while True:
        port = random.randint(20_000, 55_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue


@contextlib.contextmanager
def local_cluster(nodes: int = 3):
    servers = [LocalRedis(port=cluster_port(), extra_args=["--cluster-enabled", "yes"]) for _ in range(nodes)]
    try:
        for s in servers:
            s.start()
        addresses = [s.connection_string for s in servers]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 30
        while any(s.client().cluster("info").get("cluster_state") != "ok" for s in servers):
            assert time.monotonic() < deadline, "cluster did not become ready"
            time.sleep(0.2)
        yield servers
    finally:
        for s in servers:
            s.close()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli to create the cluster")
def test_push_and_read_on_a_three_node_cluster(tmp_path):
    with local_cluster() as servers:
        repo = tmp_path / "cluster"
        (repo / "data").mkdir(parents=True)
        yaml = feature_store_yaml(
            "c" + uuid.uuid4().hex[:6],
            ",".join(s.connection_string for s in servers),
            online_extra="redis_type: redis_cluster",
        )
        (repo / "feature_store.yaml").write_text(yaml)
        store = FeatureStore(repo_path=str(repo))
        store.apply(objects(repo / "events"))
        frames = batches(10, 60, seed=9)
        for frame in frames:
            store.push("clicks_push", frame)
        cluster = redis.RedisCluster(host="127.0.0.1", port=servers[0].port)
        slots_used = {cluster.keyslot(k) for s in servers for k in s.client().keys("fsq:*")}
        assert len(slots_used) > 10  # the sequences really are spread over the cluster
        assert_clicks_match_reference(store, frames, users=20)
