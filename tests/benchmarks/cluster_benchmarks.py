"""Push and read figures on a local three-node Redis Cluster, side by side with one Redis in the
same run (`run_benchmarks.py cluster`).

All nodes share this machine's two CPUs, so the figures show the client-side cost of cluster mode
(slot routing, one connection per node, pipelines split by node), not the capacity a real cluster
of separate machines adds.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import run_benchmarks as rb
from feast import FeatureStore

from feast_sequence import SequenceFeatureView

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the cluster fixture and repos
from redis_cluster import local_cluster  # noqa: E402
from repos import PURCHASE_FIELDS, push_source, sequence_online, write_repo  # noqa: E402


def _store(root: Path, project: str, connection: str, cluster: bool) -> FeatureStore:
    repo = root / project
    online = sequence_online(connection, **({"redis_type": "redis_cluster"} if cluster else {}))
    store = FeatureStore(repo_path=str(write_repo(repo, project, online)))
    view = SequenceFeatureView(
        name="seq",
        entities=[rb.customer],
        source=push_source("seq", repo / "data"),
        schema=PURCHASE_FIELDS,
        max_length=100,
    )
    store.apply([rb.customer, view])
    return store


def _blocks(
    a: Callable[[int], object], b: Callable[[int], object], repeats: int, block: int
) -> Tuple[List[float], List[float]]:
    """Alternate blocks of calls rather than single calls: two stores called in turn defeat Feast's
    process-wide registry caches (about 1 ms a call), which would hide the difference measured."""
    times_a: List[float] = []
    times_b: List[float] = []
    for start in range(0, repeats, block):
        for fn, out in ((a, times_a), (b, times_b)):
            for i in range(start, min(start + block, repeats)):
                out.append(rb.timed(lambda fn=fn, i=i: fn(i)))
    return times_a, times_b


def run(single_connection: str) -> Dict[str, float]:
    results: Dict[str, float] = {}
    with local_cluster() as servers, tempfile.TemporaryDirectory() as tmp:
        cluster = _store(Path(tmp), "clustered", ",".join(s.connection_string for s in servers), cluster=True)
        single = _store(Path(tmp), "single", single_connection, cluster=False)
        batches = [rb.events(10_000, 1000, 1_000_000 * (i + 1), seed=i) for i in range(8)]
        for store in (cluster, single):
            store.push("seq_push", batches[0])  # warm up
        t_cluster, t_single = _blocks(
            lambda i: cluster.push("seq_push", batches[i + 1]),
            lambda i: single.push("seq_push", batches[i + 1]),
            7,
            1,
        )
        results["cluster_push_events_per_s"] = 10_000 / rb.p50(t_cluster)
        results["cluster_push_events_per_s_single"] = 10_000 / rb.p50(t_single)
        results["cluster_push_ratio"] = rb.p50(t_single) / rb.p50(t_cluster)

        refs = ["seq:item_id", "seq:quantity", "seq:price", "seq:ts"]
        customers = np.random.default_rng(3).integers(0, 1000, 400)
        t_cluster, t_single = _blocks(
            lambda i: cluster.get_online_features(features=refs, entity_rows=[{"customer_id": int(customers[i])}]),
            lambda i: single.get_online_features(features=refs, entity_rows=[{"customer_id": int(customers[i])}]),
            400,
            50,
        )
        results["cluster_read_1_p50_ms"] = rb.p50(t_cluster) * 1000
        results["cluster_read_1_p50_ms_single"] = rb.p50(t_single) * 1000
        results["cluster_read_1_p50_ratio"] = rb.p50(t_cluster) / rb.p50(t_single)
        same = cluster.get_online_features(features=refs, entity_rows=[{"customer_id": 7}]).to_dict()
        assert same == single.get_online_features(features=refs, entity_rows=[{"customer_id": 7}]).to_dict()
    return results


if __name__ == "__main__":
    from feast_sequence.testing.local_redis import LocalRedis

    with LocalRedis() as redis:
        started = time.perf_counter()
        for key, value in run(redis.connection_string).items():
            print(f"{key:36} {value:12.3f}")
        print(f"{time.perf_counter() - started:.0f} s")
