"""Long sequences (issue 13): Redis memory per stored event and full reads against Feast's own
arrays, compaction throughput, the retail data, and the offline replay at long max_length
(`run_benchmarks.py long`).

The baseline holds the same events as `Array` features of one regular view in Feast's built-in
Redis store, one row per user (newest first). Memory is `INFO memory` used_memory before and after
writing, divided by the events stored; "after push" is what writers leave (they compact a tail once
it holds compact_after = 64 events), "compacted" is after `feast-sequence compact` (a sequence with
no tail left).

Three data sets, each reported under its own keys: the benchmark's *current* data (timestamps one
second apart, 5,000 item ids; keys without a suffix), *high-entropy* data (``_high_entropy``:
timestamps at random over 30 years, 50,000 random 11-character item ids, random float32 prices,
random integers, 100 users, pushed in time order in batches of 20,000 events as a backfill would),
and the retail customers (``retail_``: Online Retail II, Chen, D. (2019), UCI Machine Learning
Repository, https://doi.org/10.24432/C5CG6D, CC BY 4.0; see data/online-retail-ii/README.md).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
import run_benchmarks as rb
from feast import FeatureStore, FeatureView, Field
from feast.types import Array, Float32, Int64, String, UnixTimestamp

from feast_sequence import SequenceFeatureView, sequence_settings
from feast_sequence.feast_internals import store_provider

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for repos
from repos import PURCHASE_FIELDS, feast_redis_repo, push_source, sequence_online, write_repo  # noqa: E402

LENGTHS = {100: 200, 1000: 100, 10_000: 20}  # events per user -> users
HIGH_ENTROPY_USERS = 100
BATCH = 20_000  # events per push, as a backfill sends them


def high_entropy_sequences(users: int, per_user: int, seed: int) -> pd.DataFrame:
    """``per_user`` events for each of ``users`` that compress as real users' do: whole-second
    timestamps at random over 30 years, item ids drawn from 50,000 random 11-character strings,
    random float32 prices, small random quantities; no (user, item, quantity) twice, so ``dedup_by`` keeps
    every event. Time order, as a backfill pushes history."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    vocabulary = np.unique(["".join(w) for w in rng.choice(alphabet, size=(50_500, 11))])[:50_000]
    n = users * per_user
    df = pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(users), per_user).astype("int64"),
            "item_id": vocabulary[rng.integers(0, len(vocabulary), n)],
            "quantity": rng.integers(1, 50, n).astype("int64"),
            "price": rng.uniform(0.01, 5000, n).astype("float32"),
            "ts": pd.to_datetime(rng.integers(0, 30 * 365 * 86_400, n) + 631_152_000, unit="s", utc=True),
        }
    )
    # A second draw of the same pair would be deduplicated away; redraw its quantity instead.
    while (dup := df.duplicated(["customer_id", "item_id", "quantity"])).any():
        df.loc[dup, "quantity"] = rng.integers(1000, 1_000_000, int(dup.sum()))
    return df.sort_values("ts", kind="stable").reset_index(drop=True)


def current_sequences(users: int, per_user: int, seed: int) -> pd.DataFrame:
    """The benchmark's own events (run_benchmarks.events), with distinct (item, quantity) pairs so
    ``dedup_by`` keeps every event too."""
    data = rb.full_sequences(users, per_user, seed=seed)
    data["quantity"] = np.arange(len(data)) % per_user
    return data


DATA_SETS = {  # key suffix -> (events for (users, per_user, seed), users per length)
    "": (current_sequences, LENGTHS),
    "_high_entropy": (high_entropy_sequences, {n: HIGH_ENTROPY_USERS for n in LENGTHS}),
}


def _stores(root: Path, connection: str, **online: int):
    seq_repo = write_repo(root / "long", "long", sequence_online(connection, **online))
    seq = FeatureStore(repo_path=str(seq_repo))
    views = []
    for n in LENGTHS:
        for suffix, extra in (("", {}), ("_dedup", {"dedup_by": ["item_id", "quantity"]})):
            name = f"long_{n}{suffix}"
            views.append(
                SequenceFeatureView(
                    name=name,
                    entities=[rb.customer],
                    source=push_source(name, seq_repo / "data"),
                    schema=PURCHASE_FIELDS,
                    max_length=n,
                    **extra,
                )
            )
    seq.apply([rb.customer, *views])
    fields = [("item_id", String), ("quantity", Int64), ("price", Float32), ("times", UnixTimestamp)]
    return seq, _arrays_store(root, "arrays", connection, fields)


def _arrays_store(root: Path, name: str, connection: str, fields) -> FeatureStore:
    """Feast's built-in Redis store with one regular view ``name`` of ``Array`` features: the baseline."""
    repo = feast_redis_repo(root / name, name, connection)
    store = FeatureStore(repo_path=str(repo))
    arrays = FeatureView(
        name=name,
        entities=[rb.customer],
        source=push_source(name, repo / "data"),
        schema=[Field(name=f, dtype=Array(t)) for f, t in fields],
        ttl=timedelta(0),
    )
    store.apply([rb.customer, arrays])
    return store


def _as_arrays(df: pd.DataFrame) -> pd.DataFrame:
    ordered = df.sort_values("ts", ascending=False)
    grouped = ordered.groupby("customer_id", sort=True)
    out = pd.DataFrame({"customer_id": grouped.size().index.astype("int64")})
    out["item_id"] = grouped["item_id"].apply(list).to_list()
    out["quantity"] = grouped["quantity"].apply(list).to_list()
    out["price"] = grouped["price"].apply(lambda s: [float(v) for v in s]).to_list()
    out["times"] = grouped["ts"].apply(lambda s: [t.to_pydatetime() for t in s]).to_list()
    return out.assign(ts=pd.Timestamp(rb.T0))


def _client(connection: str):
    import redis

    host, port = connection.split(",")[0].rsplit(":", 1)
    return redis.Redis(host=host, port=int(port))


def _delta(client, write) -> int:
    before = client.info("memory")["used_memory"]
    write()
    return int(client.info("memory")["used_memory"] - before)


def _compact(store: FeatureStore, view: str) -> int:
    online = store_provider(store).online_store
    return int(online.compact_sequence_view(store.config, sequence_settings(store.get_feature_view(view))))


def run(connection: str) -> Dict[str, float]:
    client = _client(connection)
    results: Dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        seq, base = _stores(Path(tmp), connection)
        # Warm up both stores first (scripts loaded, Redis's key tables grown), so the first figure
        # does not carry one-off costs.
        warm = rb.full_sequences(50, 100, seed=0)
        warm["customer_id"] += 99_000_000
        base.push("arrays_push", _as_arrays(warm))
        for view in ("long_100", "long_100_dedup"):
            seq.push(f"{view}_push", warm)
        for dataset, (make, lengths) in DATA_SETS.items():
            for n, users in lengths.items():
                data = make(users, n, n)
                data["customer_id"] += n * 1_000 + (500_000_000 if dataset else 0)  # rows of their own
                results.update(_memory(client, seq, base, data, n, dataset))

        # Full reads of N = 1,000 events: 1 and 100 users, vs the arrays of the same users.
        features_seq = [f"long_1000:{f}" for f in ("item_id", "quantity", "price", "ts")]
        features_base = [f"arrays:{f}" for f in ("item_id", "quantity", "price", "times")]
        for dataset, first in (("", 1000 * 1_000), ("_high_entropy", 500_000_000 + 1000 * 1_000)):
            for count in (1, 100):
                rows = [
                    [{"customer_id": first + c} for c in range(k, k + count)] for k in range(0, 100 - count + 1, count)
                ]
                repeats = 200 if count == 1 else 30
                t_seq, t_base = rb.interleaved(
                    lambda i, r=rows: seq.get_online_features(features=features_seq, entity_rows=r[i % len(r)]),
                    lambda i, r=rows: base.get_online_features(features=features_base, entity_rows=r[i % len(r)]),
                    repeats,
                    (
                        rb.as_if_alone(seq, features_seq, full_feature_names=False),
                        rb.as_if_alone(base, features_base, full_feature_names=False),
                    ),
                )
                results[f"read_{count}_long_p50_ms{dataset}"] = rb.p50(t_seq) * 1000
                results[f"read_{count}_long_p50_ratio{dataset}"] = rb.p50(t_seq) / rb.p50(t_base)

        # Compaction throughput: sequences written with their tails only, then compacted.
        client.flushall()
        seq, base = _stores(Path(tmp) / "tails", connection, compact_after=0)
        online = store_provider(seq).online_store
        data = rb.full_sequences(100, 1000, seed=3)
        seq.push("long_1000_push", data)
        start = time.perf_counter()
        online.compact_sequence_view(seq.config, sequence_settings(seq.get_feature_view("long_1000")))
        results["compaction_events_per_s"] = len(data) / (time.perf_counter() - start)
    return results


def _memory(client, seq: FeatureStore, base: FeatureStore, data: pd.DataFrame, n: int, dataset: str):
    """Memory per event of one data set at max_length ``n``: Feast's arrays, then each view after
    pushes of ``BATCH`` events and after a full compaction (keys end with ``dataset``)."""
    results: Dict[str, float] = {}
    stored = len(data)
    arrays = _as_arrays(data)
    base_bytes = _delta(client, lambda a=arrays: base.push("arrays_push", a))
    key = "" if n == 100 else f"_{n}"
    results[f"memory_bytes_per_event_arrays_{n}{dataset}"] = base_bytes / stored
    for suffix, label in (("", ""), ("_dedup", "_dedup_by")):
        view = f"long_{n}{suffix}"
        pushed = _delta(
            client,
            lambda v=view: [
                rb.settled_push(seq, f"{v}_push", data.iloc[i : i + BATCH]) for i in range(0, stored, BATCH)
            ],
        )
        compacted = _delta(client, lambda v=view: _compact(seq, v))
        results[f"memory_bytes_per_event{key}{label}{dataset}"] = pushed / stored
        results[f"memory_bytes_per_event{key}{label}_compacted{dataset}"] = (pushed + compacted) / stored
        results[f"memory_ratio{key}{label}{dataset}"] = pushed / base_bytes
        results[f"memory_ratio{key}{label}_compacted{dataset}"] = (pushed + compacted) / base_bytes
    return results


def retail(connection: str, top: int = 50) -> Dict[str, float]:
    """Memory on the real retail events: the customers with the most purchase lines, max_length 1,000."""
    from feast_sequence.examples.retail import load_events

    raw = Path(__file__).resolve().parents[2] / "data/online-retail-ii/online_retail_ii_2009-2010.parquet"
    events = load_events(raw).purchases.rename(columns={"event_timestamp": "ts"})
    heavy = events["customer_id"].value_counts().head(top).index
    data = events[events["customer_id"].isin(heavy)]
    data = data.sort_values("ts", ascending=False).groupby("customer_id").head(1000)
    client = _client(connection)
    client.flushall()
    results: Dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fields = [
            Field(name=f, dtype=t)
            for f, t in (("invoice", String), ("item_id", String), ("quantity", Int64), ("unit_price", Float32))
        ]
        seq = FeatureStore(repo_path=str(write_repo(root / "retail", "retail", sequence_online(connection))))
        views = [
            SequenceFeatureView(
                name=f"retail{suffix}",
                entities=[rb.customer],
                source=push_source(f"retail{suffix}", root / "retail" / "data"),
                schema=fields,
                max_length=1000,
                **extra,
            )
            for suffix, extra in (("", {}), ("_dedup", {"dedup_by": ["invoice", "item_id"]}))
        ]
        seq.apply([rb.customer, *views])
        columns = [(f.name, f.dtype) for f in fields] + [("event_timestamps", UnixTimestamp)]
        base = _arrays_store(root, "retail_arrays", connection, columns)
        ordered = data.sort_values("ts", ascending=False).groupby("customer_id", sort=True)
        rows = pd.DataFrame({"customer_id": ordered.size().index.astype("int64")})
        for f in ("invoice", "item_id"):
            rows[f] = ordered[f].apply(list).to_list()
        rows["quantity"] = ordered["quantity"].apply(lambda s: [int(v) for v in s]).to_list()
        rows["unit_price"] = ordered["unit_price"].apply(lambda s: [float(v) for v in s]).to_list()
        rows["event_timestamps"] = ordered["ts"].apply(lambda s: [t.to_pydatetime() for t in s]).to_list()
        rows["ts"] = pd.Timestamp(rb.T0)
        base_bytes = _delta(client, lambda: base.push("retail_arrays_push", rows))
        frame = data.assign(quantity=data["quantity"].astype("int64"))
        for suffix, label in (("", ""), ("_dedup", "_dedup_by")):
            pushed = _delta(client, lambda s=suffix: rb.settled_push(seq, f"retail{s}_push", frame))
            results[f"retail_memory_ratio_1000{label}"] = pushed / base_bytes
        results["retail_events"] = float(len(data))
    return results


def offline(lengths: List[int] = [10_000, 100_000]) -> Dict[str, float]:  # noqa: B006
    """The point-in-time replay's cost per event at long max_length (offline/pit.py)."""
    import pyarrow as pa

    from feast_sequence.definitions.columns import EVENT_TIME_US, QUERY_TIME_US, ROW_ID
    from feast_sequence.offline.pit import sequences_as_of

    results: Dict[str, float] = {}
    for n in lengths:
        view = SequenceFeatureView(
            name="pit",
            entities=[rb.customer],
            source=push_source("pit", Path("/tmp")),
            schema=PURCHASE_FIELDS,
            max_length=n,
        )
        settings = sequence_settings(view)
        events_n = 2 * n
        rng = np.random.default_rng(1)
        table = pa.table(
            {
                "item_id": [f"item_{k:05d}" for k in rng.integers(0, 5000, events_n)],
                "quantity": rng.integers(1, 50, events_n),
                "price": rng.uniform(0.5, 30, events_n).astype("float32"),
                EVENT_TIME_US: rng.permutation(events_n).astype("int64") * 1_000_000,
            }
        )
        queries = pa.table({ROW_ID: [0], QUERY_TIME_US: [events_n * 1_000_000]})
        start = time.perf_counter()
        sequences_as_of(settings, ["item_id"], table, queries)
        results[f"pit_us_per_event_{n}"] = (time.perf_counter() - start) / events_n * 1e6
    return results
