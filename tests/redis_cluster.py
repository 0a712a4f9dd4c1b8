"""A local Redis Cluster of a few primaries on loopback, for the cluster tests and benchmarks."""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
from typing import Iterator, List

from feast_sequence.testing.local_redis import LocalRedis

from repos import wait_until


def cluster_port() -> int:
    """A free port whose cluster bus port (+10,000) is free too; Redis refuses ports over 55,535."""
    while True:
        port = random.randint(20_000, 55_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue


def cluster_ok(server: LocalRedis) -> bool:
    """Whether ``server`` reports its cluster state ok."""
    return bool(server.client().cluster("info").get("cluster_state") == "ok")


@contextlib.contextmanager
def local_cluster(nodes: int = 3) -> Iterator[List[LocalRedis]]:
    """``nodes`` primaries (no replicas) joined into one cluster, stopped on exit."""
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
        wait_until(lambda: all(cluster_ok(s) for s in servers), 30, "the cluster to become ready", 0.2)
        yield servers
    finally:
        for s in servers:
            s.close()
