"""`make bench`: this store against Feast's built-in Redis store, side by side on one private Redis.

Prints a table and writes the figures as JSON to $BENCH_OUT (default build/bench.json). Every ratio
compares two measurements taken in the same run, interleaved, so machine noise affects both.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pandas as pd
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, ValueType
from feast.types import Array, Float32, Int64, String, UnixTimestamp

from feast_sequence import (
    EnrichmentCache,
    SequenceFeatureView,
    SequenceSpec,
    SequenceUseCase,
    Where,
    enrich,
    feast_internals,
)
from feast_sequence.feast_internals import store_provider
from feast_sequence.testing.local_redis import LocalRedis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the repository builder
from repos import PURCHASE_FIELDS, feast_redis_repo, push_source, sequence_online, write_repo  # noqa: E402

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
RNG_SEED = 20261125
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)


def sequence_store(root: Path, connection: str) -> FeatureStore:
    data = write_repo(root / "seq", "seq", sequence_online(connection)) / "data"
    views = [
        SequenceFeatureView(
            name=name,
            entities=[customer],
            source=push_source(name, data),
            schema=PURCHASE_FIELDS,
            max_length=n,
            **extra,
        )
        for name, n, extra in [
            ("seq_a", 100, {}),
            ("seq_b", 100, {}),
            ("seq_dedup", 100, {"dedup_by": ["item_id"]}),
            ("seq_short", 10, {}),
            ("seq_long", 10_000, {}),
            ("seq_1000", 1000, {}),
        ]
    ]
    store = FeatureStore(repo_path=str(data.parent))
    store.apply([customer, *views])
    return store


def add_use_case(
    store: FeatureStore, full: pd.DataFrame
) -> Tuple[FeatureService, FeatureService, FeatureService, List[Any]]:
    """A ranking use case on `store`'s seq_a and seq_b: 100 events each, filtered, enriched from a
    regular `item` view (pushed here for all items of `events` but 1%, so some lookups miss), padded,
    with the enrichment cached; the same without the cache (every lookup read from Redis); and the
    same over copies of the views that enrich at index time (`full` pushed to them after the items).
    Returns the three services and the objects to delete afterwards."""
    item_view = FeatureView(
        name="item",
        entities=[item],
        source=push_source("item", Path(store.repo_path) / "data"),
        schema=[
            Field(name="item_id", dtype=String),
            Field(name="description", dtype=String),
            Field(name="price", dtype=Float32),
        ],
        ttl=timedelta(0),
    )
    # the events have a price of their own, hence the prefix
    by_item = enrich(item_view, on="item_id", features=["description", "price"], prefix="item_")
    # quantities are 1..49: this drops ~2% of the events, so filtering and padding both do work
    spec = SequenceSpec(length=100, where=[Where("quantity", ">", 1)], enrich=[by_item])
    fields = ["item_id", "quantity", "price", "ts"]
    cache = EnrichmentCache(ttl_seconds=600, max_entries=100_000)
    by_item_cached = enrich(item_view, on="item_id", features=["description", "price"], prefix="item_", cache=cache)
    cached_spec = SequenceSpec(length=100, where=[Where("quantity", ">", 1)], enrich=[by_item_cached])
    use_case = SequenceUseCase(
        name="bench_ranking",
        features=[store.get_feature_view(v)[fields] for v in ("seq_a", "seq_b")],
        sequences={"seq_a": cached_spec, "seq_b": cached_spec},
        output="padded",
    )
    cold = SequenceUseCase(
        name="bench_ranking_cold",
        features=[store.get_feature_view(v)[fields] for v in ("seq_a", "seq_b")],
        sequences={"seq_a": spec, "seq_b": spec},
        output="padded",
    )
    indexed_views = [
        SequenceFeatureView(
            name=f"{v}_idx",
            entities=[customer],
            source=push_source(f"{v}_idx", Path(store.repo_path) / "data"),
            schema=PURCHASE_FIELDS,
            max_length=100,
            enrich=[by_item],
        )
        for v in ("seq_a", "seq_b")
    ]
    indexed = SequenceUseCase(
        name="bench_ranking_indexed",
        features=[v[fields] for v in indexed_views],
        sequences={v.name: spec for v in indexed_views},
        output="padded",
    )
    store.apply([item, item_view, use_case, cold, *indexed_views, indexed])
    ids = [k for k in range(5000) if k % 100]
    store.push(
        "item_push",
        pd.DataFrame(
            {
                "item_id": [f"item_{k:05d}" for k in ids],
                "description": [f"description of item {k}" for k in ids],
                "price": np.linspace(1, 100, len(ids)).astype("float32"),
                "ts": pd.Timestamp(T0),
            }
        ),
    )
    for view in indexed_views:
        store.push(f"{view.name}_push", full)
    created = [use_case, cold, indexed, *indexed_views, item_view, item]
    return (
        store.get_feature_service("bench_ranking"),
        store.get_feature_service("bench_ranking_cold"),
        store.get_feature_service("bench_ranking_indexed"),
        created,
    )


def builtin_store(root: Path, connection: str) -> FeatureStore:
    repo = feast_redis_repo(root / "base", "base", connection)
    data = repo / "data"

    def regular_view(name: str, schema: List[Field]) -> FeatureView:
        return FeatureView(
            name=name, entities=[customer], source=push_source(name, data), schema=schema, ttl=timedelta(0)
        )

    regular = regular_view("regular", PURCHASE_FIELDS)
    array_fields = [
        Field(name=f"{p}_{f}", dtype=Array(t))
        for p in ("a", "b")
        for f, t in (("item_id", String), ("quantity", Int64), ("price", Float32), ("ts", UnixTimestamp))
    ]
    arrays = regular_view("arrays", array_fields)
    # Feast's push lists every view of the registry, so both repositories hold six views.
    fillers = [regular_view(f"filler_{k}", PURCHASE_FIELDS) for k in range(4)]
    store = FeatureStore(repo_path=str(repo))
    store.apply([customer, regular, arrays, *fillers])
    return store


def events(n: int, users: int, start_s: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": rng.integers(0, users, n).astype("int64"),
            "item_id": [f"item_{k:05d}" for k in rng.integers(0, 5000, n)],
            "quantity": rng.integers(1, 50, n).astype("int64"),
            "price": rng.uniform(0.5, 30, n).astype("float32"),
            "ts": pd.to_datetime(start_s + np.arange(n), unit="s", utc=True),
        }
    )


def full_sequences(users: int, per_user: int, seed: int) -> pd.DataFrame:
    df = events(users * per_user, users, 0, seed)
    df["customer_id"] = np.repeat(np.arange(users), per_user)
    return df


def as_arrays(df: pd.DataFrame) -> pd.DataFrame:
    """One row per customer holding its events as lists, newest first (the built-in layout)."""
    ordered = df.sort_values("ts", ascending=False)
    grouped = ordered.groupby("customer_id", sort=True)
    out = pd.DataFrame({"customer_id": grouped.size().index.astype("int64")})
    for prefix in ("a", "b"):
        out[f"{prefix}_item_id"] = grouped["item_id"].apply(list).to_list()
        out[f"{prefix}_quantity"] = grouped["quantity"].apply(list).to_list()
        out[f"{prefix}_price"] = grouped["price"].apply(lambda s: [float(v) for v in s]).to_list()
        out[f"{prefix}_ts"] = grouped["ts"].apply(lambda s: [t.to_pydatetime() for t in s]).to_list()
    out["ts"] = pd.Timestamp(T0)
    return out


def p50(samples: List[float]) -> float:
    return statistics.median(samples)


def p99(samples: List[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    a: Callable[[int], object],
    b: Callable[[int], object],
    repeats: int,
    untimed: Tuple[Callable[[], object], Callable[[], object]] = (lambda: None, lambda: None),
) -> tuple:
    """Time a(i) and b(i) alternately, so drift on the machine hits both alike; ``untimed``: what to
    run, not timed, before each a(i) and each b(i) (``as_if_alone``)."""
    ta, tb = [], []
    for i in range(repeats):
        untimed[0]()
        ta.append(timed(lambda i=i: a(i)))
        untimed[1]()
        tb.append(timed(lambda i=i: b(i)))
    return ta, tb


def as_if_alone(store: FeatureStore, refs: List[str], *, full_feature_names: bool) -> Callable[[], object]:
    """Put back Feast's process-wide request cache (``utils._get_cached_request_context``, one
    registry's at a time) for ``store``'s request of ``refs``, as a process serving that store alone
    has it. Two stores alternating in one process clear it on every call, and the rebuild (each
    requested view from its protobuf, typeguard-checked) costs each side per view it reads: 2 views
    for the sequence store, 1 for the arrays, several milliseconds a request on this machine, none of
    it in a service. ``full_feature_names`` is the request's: the cache is keyed on it too."""
    return lambda: feast_internals.request_grouped_refs(store.registry, store.project, refs, full_feature_names)


def reads_and_serving(redis: LocalRedis, root: Path, results: Dict[str, float]) -> Tuple[FeatureStore, FeatureStore]:
    """Reads (two views of 100 events x 3 fields + timestamps, vs the same data as arrays) and use
    cases served vs those reads (`run_benchmarks.py serve` runs only this part); returns the stores."""
    redis.client().flushall()
    seq = sequence_store(root / "again", redis.connection_string)
    base = builtin_store(root / "again", redis.connection_string)
    full = full_sequences(1000, 100, seed=11)
    seq.push("seq_a_push", full)
    seq.push("seq_b_push", full)
    base.push("arrays_push", as_arrays(full))
    store_provider(seq).online_store.drain_compactions(timeout_seconds=300)  # the sequences at rest
    seq_refs = [f"seq_{v}:{f}" for v in ("a", "b") for f in ("item_id", "quantity", "price", "ts")]
    base_refs = [f"arrays:{v}_{f}" for v in ("a", "b") for f in ("item_id", "quantity", "price", "ts")]
    check = seq.get_online_features(features=seq_refs[:1], entity_rows=[{"customer_id": 3}]).to_dict()["item_id"][0]
    assert (
        check
        == base.get_online_features(features=base_refs[:1], entity_rows=[{"customer_id": 3}]).to_dict()["a_item_id"][0]
    )
    requests = {
        n: [
            [{"customer_id": int(c)} for c in np.random.default_rng(i).choice(1000, n, replace=False)]
            for i in range(repeats)
        ]
        for n, repeats in ((1, 400), (100, 100))
    }
    for n, rows in requests.items():
        repeats = len(rows)
        t_seq, t_base = interleaved(
            lambda i, rows=rows: seq.get_online_features(
                features=seq_refs, entity_rows=rows[i], full_feature_names=True
            ),
            lambda i, rows=rows: base.get_online_features(
                features=base_refs, entity_rows=rows[i], full_feature_names=True
            ),
            repeats,
            (
                as_if_alone(seq, seq_refs, full_feature_names=True),
                as_if_alone(base, base_refs, full_feature_names=True),
            ),
        )
        results[f"read_{n}_p50_ms"] = p50(t_seq) * 1000
        results[f"read_{n}_p50_ms_builtin"] = p50(t_base) * 1000
        results[f"read_{n}_p50_ratio"] = p50(t_seq) / p50(t_base)

    # Serving a use case (filter, size, enrich, pad) vs the plain read of the same sequences above.
    service, cold, indexed, created = add_use_case(seq, full)
    served = seq.get_online_features(
        features=service, entity_rows=[{"customer_id": 3}], full_feature_names=True
    ).to_dict()
    plain = seq.get_online_features(
        features=["seq_a:item_id", "seq_a:quantity"], entity_rows=[{"customer_id": 3}]
    ).to_dict()
    kept = [i for i, q in zip(plain["item_id"][0], plain["quantity"][0]) if q > 1]
    assert served["seq_a__item_id"][0] == kept + [""] * (100 - len(kept))
    assert served["seq_a__mask"][0] == [True] * len(kept) + [False] * (100 - len(kept))
    # Warm the enrichment cache with every customer's items, as a running service's would be.
    everyone = [{"customer_id": c} for c in range(1000)]
    for start in range(0, len(everyone), 100):
        seq.get_online_features(features=service, entity_rows=everyone[start : start + 100], full_feature_names=True)
    hits, misses = cache_counts()

    def against_plain(key: str, features: Any, rows: List[List[Dict[str, int]]]) -> None:
        """Serving ``features`` interleaved with the plain read of the same sequences: p50 and ratio."""
        t_serve, t_plain = interleaved(
            lambda i: seq.get_online_features(features=features, entity_rows=rows[i], full_feature_names=True),
            lambda i: seq.get_online_features(features=seq_refs, entity_rows=rows[i], full_feature_names=True),
            len(rows),
        )
        results[f"{key}_p50_ms"] = p50(t_serve) * 1000
        results[f"{key}_p50_ratio"] = p50(t_serve) / p50(t_plain)

    for n, rows in requests.items():
        against_plain(f"serve_{n}", service, rows)
        if n == 100:  # the same without the cache: every distinct item read from Redis
            against_plain("serve_cold_100", cold, rows)
        # The same use case with the enrichment moved to index time (served from the stored events).
        against_plain(f"serve_indexed_{n}", indexed, rows)
    now_hits, now_misses = cache_counts()
    results["enrich_cache_hit_rate"] = (now_hits - hits) / max(1.0, now_hits - hits + now_misses - misses)
    # Feast's push scans the registry: extra objects would slow every push below (~20% for one event).
    seq.apply([], objects_to_delete=created, partial=False)
    return seq, base


def cache_counts() -> Tuple[float, float]:
    """Enrichment cache hits and misses of `item` so far in this process (the serving metrics)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    labels = {"enrichment": "item"}
    hits = registry.get_sample_value("feast_sequence_enrichment_cache_hits_total", labels) or 0.0
    misses = registry.get_sample_value("feast_sequence_enrichment_cache_misses_total", labels) or 0.0
    return hits, misses


def settled_push(store: FeatureStore, source: str, df: pd.DataFrame) -> None:
    """``store.push``, then the compactions it left to the store's worker: what memory figures measure
    is a sequence at rest (docs/ingest.md, compaction after the answer)."""
    store.push(source, df)
    store_provider(store).online_store.drain_compactions(timeout_seconds=300)


def compactions(view: str) -> float:
    """Sequences of ``view`` compacted so far by this process's writers, inline or in the background."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    name = "feast_sequence_compacted_sequences_total"
    return sum(registry.get_sample_value(name, {"view": view, "where": w}) or 0.0 for w in ("inline", "background"))


def run(redis: LocalRedis, root: Path) -> Dict[str, float]:
    seq = sequence_store(root, redis.connection_string)
    base = builtin_store(root, redis.connection_string)
    client = redis.client()
    results: Dict[str, float] = {}

    # Batch push: 10,000 events for 1,000 users in one push, fresh timestamps each repetition.
    batches = [events(10_000, 1000, 1_000_000 * (i + 1), seed=i) for i in range(7)]
    seq.push("seq_a_push", batches[0])
    base.push("regular_push", batches[0])  # warm both paths
    t_seq, t_base = interleaved(
        lambda i: seq.push("seq_a_push", batches[i]), lambda i: base.push("regular_push", batches[i]), 7
    )
    results["push_batch_events_per_s"] = 10_000 / p50(t_seq)
    results["push_batch_events_per_s_builtin"] = 10_000 / p50(t_base)
    results["push_batch_ratio"] = p50(t_base) / p50(t_seq)

    # Single-event push latency.
    singles = events(400, 1000, 50_000_000, seed=99)
    t_seq, t_base = interleaved(
        lambda i: seq.push("seq_a_push", singles.iloc[i : i + 1]),
        lambda i: base.push("regular_push", singles.iloc[i : i + 1]),
        400,
    )
    results["push_single_p50_ms"] = p50(t_seq) * 1000
    results["push_single_p50_ms_builtin"] = p50(t_base) * 1000
    results["push_single_p50_ratio"] = p50(t_seq) / p50(t_base)

    # Freshness: push in one client, read it back in another. 300 events to one sequence: every
    # compact_after (64) of them trigger a compaction, which the freshness figure includes.
    reader = FeatureStore(repo_path=str(seq.repo_path))
    compacted_before = compactions("seq_a")
    fresh = events(300, 1, 90_000_000, seed=5).assign(customer_id=123_456)
    latencies = []
    for i in range(len(fresh)):
        want = fresh["item_id"].iloc[i]
        start = time.perf_counter()
        seq.push("seq_a_push", fresh.iloc[i : i + 1])
        while reader.get_online_features(features=["seq_a:item_id"], entity_rows=[{"customer_id": 123_456}]).to_dict()[
            "item_id"
        ][0][:1] != [want]:
            pass
        latencies.append((time.perf_counter() - start) * 1000)
    results["freshness_p50_ms"] = p50(latencies)
    results["freshness_p99_ms"] = p99(latencies)
    results["freshness_p99_to_push_single_p50"] = results["freshness_p99_ms"] / results["push_single_p50_ms"]
    store_provider(seq).online_store.drain_compactions(timeout_seconds=30)
    results["freshness_compactions"] = compactions("seq_a") - compacted_before

    seq, base = reads_and_serving(redis, root, results)

    # Write cost with full sequences: max_length 10,000 vs 10, 10 users, same new events.

    prefill = full_sequences(10, 10_000, seed=12)
    seq.push("seq_long_push", prefill)
    seq.push("seq_short_push", prefill)
    extra = [events(1000, 10, 10_000_000 * (i + 1), seed=100 + i) for i in range(7)]
    t_long, t_short = interleaved(
        lambda i: seq.push("seq_long_push", extra[i]), lambda i: seq.push("seq_short_push", extra[i]), 7
    )
    results["write_cost_ratio"] = p50(t_long) / p50(t_short)

    # Read-append-write on the built-in store at N = 1,000 vs appending one event here.
    seq.push("seq_1000_push", full_sequences(20, 1000, seed=13))
    base_full = as_arrays(full_sequences(20, 1000, seed=13))
    base.push("arrays_push", base_full)
    new = events(60, 20, 400_000_000, seed=14)

    def read_append_write(i: int) -> None:
        row = new.iloc[i]
        refs = ["arrays:a_item_id", "arrays:a_quantity", "arrays:a_price", "arrays:a_ts"]
        current = base.get_online_features(features=refs, entity_rows=[{"customer_id": int(row.customer_id)}]).to_dict()
        updated = base_full[base_full["customer_id"] == row.customer_id].copy()
        updated["a_item_id"] = [([row.item_id] + current["a_item_id"][0])[:1000]]
        updated["a_quantity"] = [([int(row.quantity)] + current["a_quantity"][0])[:1000]]
        updated["a_price"] = [([float(row.price)] + current["a_price"][0])[:1000]]
        updated["a_ts"] = [([row.ts.to_pydatetime()] + current["a_ts"][0])[:1000]]
        updated["ts"] = pd.Timestamp(T0) + timedelta(seconds=i + 1)
        base.push("arrays_push", updated)

    t_seq, t_rmw = interleaved(lambda i: seq.push("seq_1000_push", new.iloc[i : i + 1]), read_append_write, 60)
    results["rmw_ms_per_event_builtin"] = p50(t_rmw) * 1000
    results["rmw_speedup"] = p50(t_rmw) / p50(t_seq)  # vs one-event store.push calls
    # vs the per-event cost inside a batch push, as a stream consumer sends micro-batches
    results["rmw_speedup_vs_batch_push"] = p50(t_rmw) * results["push_batch_events_per_s"]

    # Memory per stored event at N = 100: 1,000 users x 100 events.
    memory = full_sequences(1000, 100, seed=15)
    unique_items = memory.assign(item_id=[f"item_{k:06d}" for k in range(len(memory))])
    per_event = {}
    for label, stored_events, load in (
        (
            "seq",
            2 * len(memory),
            lambda: (settled_push(seq, "seq_a_push", memory), settled_push(seq, "seq_b_push", memory)),
        ),
        ("seq_dedup", len(memory), lambda: settled_push(seq, "seq_dedup_push", unique_items)),
        ("builtin", 2 * len(memory), lambda: base.push("arrays_push", as_arrays(memory))),
    ):
        client.flushall()
        before = client.info("memory")["used_memory"]
        load()
        per_event[label] = (client.info("memory")["used_memory"] - before) / stored_events
    results["memory_bytes_per_event"] = per_event["seq"]
    results["memory_bytes_per_event_dedup_by"] = per_event["seq_dedup"]
    results["memory_bytes_per_event_builtin"] = per_event["builtin"]
    results["memory_ratio"] = per_event["seq"] / per_event["builtin"]
    results["memory_ratio_dedup_by"] = per_event["seq_dedup"] / per_event["builtin"]
    return results


TARGETS = {
    "push_batch_ratio": (">=", 1.5),
    "push_single_p50_ratio": ("<=", 1.0),
    "push_single_p50_ratio.markers_10000": ("<=", 1.05),
    "freshness_p99_ms": ("<=", 10.0),
    "freshness_p99_to_push_single_p50": ("<=", 2.0),
    "read_1_p50_ratio": ("<=", 1.2),  # issue 25: no overhead over Feast's path beyond the merge
    "read_100_p50_ratio": ("<=", 1.2),
    "serve_1_p50_ratio": ("<=", 1.5),
    "serve_100_p50_ratio": ("<=", 1.5),
    "serve_cold_100_p50_ratio": ("<=", 2.0),
    "serve_indexed_1_p50_ratio": ("<=", 1.3),
    "serve_indexed_100_p50_ratio": ("<=", 1.3),
    "write_cost_ratio": ("<=", 1.3),
    # Long sequences (issues 13 and 24; long_benchmarks.py): bytes per event and full reads vs
    # Feast's arrays, on the benchmark's own data and on high-entropy data.
    "memory_ratio_dedup_by": ("<=", 0.75),
    "memory_ratio_1000": ("<=", 0.5),
    "memory_ratio_1000_dedup_by": ("<=", 0.5),
    "memory_ratio_10000": ("<=", 0.5),
    "memory_ratio_10000_dedup_by": ("<=", 0.5),
    "memory_ratio_1000_high_entropy": ("<=", 0.75),
    "memory_ratio_1000_dedup_by_high_entropy": ("<=", 0.75),
    "memory_ratio_10000_high_entropy": ("<=", 0.75),
    "memory_ratio_10000_dedup_by_high_entropy": ("<=", 0.75),
    "read_1_long_p50_ratio": ("<=", 1.0),
    "read_100_long_p50_ratio": ("<=", 1.2),
    "rmw_speedup": (">=", 10.0),
    "memory_ratio": ("<=", 0.75),
    "pit_speedup": (">=", 5.0),
    "pit_scaling": ("<=", 12.0),
    "backfill_events_per_s": (">=", 100_000.0),
    "push_single_views_ratio": ("<=", 1.2),
    "push_single_51_views_ratio": ("<=", 0.1),
    "http_push_events_per_s": (">=", 1_000.0),
    "freshness_51_views_p99_ms": ("<=", 5.0),
    "serve_100_logged_p50_ratio": ("<=", 1.1),
    # The HTTP servers under load (issue 25; load_benchmarks.py): plain reads, 1 worker, vs feast serve.
    "load_read_rps_ratio": (">=", 0.8),
    # Candidate rows (issue 26; candidates_benchmarks.py): 100 candidates per user vs a plain read.
    "serve_candidates_100_p50_ratio": ("<=", 1.5),
    "serve_candidates_100x10_p50_ratio": ("<=", 1.5),
}


def machine() -> Dict[str, str]:
    import feast
    import redis as redis_py

    with LocalRedis() as r:
        server = r.client().info("server")["redis_version"]
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "feast": feast.__version__,
        "redis_py": redis_py.__version__,
        "redis_server": server,
    }


def main() -> int:
    """`run_benchmarks.py [online|serve|long|offline|cluster|stream|push|monitoring|erase|load|candidates|levels ...]`:
    every part by default (`serve` is the reads and use-case serving of `online` alone)."""
    out = Path(os.environ.get("BENCH_OUT", "build/bench.json"))
    parts = sys.argv[1:] or [
        "online",
        "long",
        "offline",
        "cluster",
        "stream",
        "push",
        "monitoring",
        "erase",
        "load",
        "candidates",
        "levels",
    ]
    results: Dict[str, float] = {}
    with LocalRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        if "online" in parts:
            results.update(run(redis, Path(tmp)))
        elif "serve" in parts:
            reads_and_serving(redis, Path(tmp), results)
        sys.path.insert(0, str(Path(__file__).parent))
        if "offline" in parts:
            import offline_benchmarks

            redis.client().flushall()
            results.update(offline_benchmarks.run(redis.connection_string))
        if "long" in parts:
            import long_benchmarks

            redis.client().flushall()
            results.update(long_benchmarks.run(redis.connection_string))
            results.update(long_benchmarks.retail(redis.connection_string))
            results.update(long_benchmarks.offline())
        for part in ("cluster", "stream", "push", "monitoring", "erase", "load", "candidates", "levels"):
            if part in parts:
                redis.client().flushall()
                module = importlib.import_module(f"{part}_benchmarks")
                results.update(module.run(redis.connection_string))
    info = machine()
    print(
        f"feast-sequence benchmarks, {info['date']}, {info['platform']}, {info['cpus']} CPUs, "
        f"Python {info['python']}, Feast {info['feast']}, Redis {info['redis_server']}"
    )
    print(f"{'figure':36} {'value':>12}  target")
    for key, value in results.items():
        target = TARGETS.get(key)
        verdict = ""
        if target:
            op, bound = target
            ok = value >= bound if op == ">=" else value <= bound
            verdict = f"{op} {bound:g}  {'met' if ok else 'MISSED'}"
        print(f"{key:36} {value:12.3f}  {verdict}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "results": results}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
