"""CPU time per request of the serving benchmark's use cases vs the plain read, interleaved.

On a machine shared with other work, wall-clock ratios mostly measure the scheduler; this process's
CPU time per request (``time.process_time``) does not. Same data and use cases as
``run_benchmarks.py serve``: `.venv/bin/python tests/benchmarks/serve_cpu.py`. With ``read``: the
plain read against Feast's built-in store reading the same events as arrays (``read_*_p50_ratio``),
the two interleaved and each timed as if alone (``run_benchmarks.as_if_alone``), with the decoded
blocks shared (warm) and with every block decoded again (cold).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import run_benchmarks as rb  # noqa: E402

from feast_sequence.feast_internals import store_provider  # noqa: E402
from feast_sequence.storage.blocks import SHARED_BLOCKS  # noqa: E402
from feast_sequence.testing.local_redis import LocalRedis  # noqa: E402


def plain_read() -> int:
    with LocalRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        seq = rb.sequence_store(Path(tmp) / "cpu", redis.connection_string)
        base = rb.builtin_store(Path(tmp) / "cpu", redis.connection_string)
        full = rb.full_sequences(1000, 100, seed=11)
        seq.push("seq_a_push", full)
        seq.push("seq_b_push", full)
        base.push("arrays_push", rb.as_arrays(full))
        store_provider(seq).online_store.drain_compactions(timeout_seconds=300)
        sides = {
            "ours": (seq, [f"seq_{v}:{f}" for v in ("a", "b") for f in ("item_id", "quantity", "price", "ts")]),
            "feast": (base, [f"arrays:{v}_{f}" for v in ("a", "b") for f in ("item_id", "quantity", "price", "ts")]),
        }
        for warm in (False, True):
            for n, repeats in ((1, 300), (100, 60)):
                cpu: dict = {name: [] for name in sides}
                for i in range(repeats):
                    if not warm:
                        SHARED_BLOCKS.clear()
                    rows = [{"customer_id": int(c)} for c in np.random.default_rng(i).choice(1000, n, replace=False)]
                    for name, (store, refs) in sides.items():
                        rb.as_if_alone(store, refs)()
                        start_cpu = time.process_time()
                        store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
                        cpu[name].append(time.process_time() - start_cpu)
                ours, feast = statistics.median(cpu["ours"]), statistics.median(cpu["feast"])
                print(
                    f"read_cpu n={n:<3} {'warm' if warm else 'cold'}  ours {ours * 1000:7.2f} ms  "
                    f"feast {feast * 1000:7.2f} ms  ratio {ours / feast:5.2f}"
                )
            if not warm:  # every block read once, so the warm figures hit the shared blocks
                everyone = [{"customer_id": c} for c in range(1000)]
                seq.get_online_features(features=sides["ours"][1], entity_rows=everyone, full_feature_names=True)
    return 0


def main() -> int:
    with LocalRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        store = rb.sequence_store(Path(tmp) / "cpu", redis.connection_string)
        full = rb.full_sequences(1000, 100, seed=11)
        store.push("seq_a_push", full)
        store.push("seq_b_push", full)
        warm, cold, indexed, _ = rb.add_use_case(store, full)
        refs = [f"seq_{v}:{f}" for v in ("a", "b") for f in ("item_id", "quantity", "price", "ts")]
        everyone = [{"customer_id": c} for c in range(1000)]
        for start in range(0, 1000, 100):  # warm the enrichment cache, as in run_benchmarks.py
            store.get_online_features(features=warm, entity_rows=everyone[start : start + 100], full_feature_names=True)
        features = {"plain": refs, "warm": warm, "cold": cold, "indexed": indexed}
        for n, repeats in ((1, 300), (100, 60)):
            cpu: dict = {name: [] for name in features}
            for i in range(repeats):
                rows = [{"customer_id": int(c)} for c in np.random.default_rng(i).choice(1000, n, replace=False)]
                for name, feature_set in features.items():
                    start_cpu = time.process_time()
                    store.get_online_features(features=feature_set, entity_rows=rows, full_feature_names=True)
                    cpu[name].append(time.process_time() - start_cpu)
            plain = statistics.median(cpu["plain"])
            for name, samples in cpu.items():
                p50 = statistics.median(samples)
                print(f"serve_cpu n={n:<3} {name:8} p50 {p50 * 1000:7.2f} ms  ratio {p50 / plain:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(plain_read() if sys.argv[1:] == ["read"] else main())
