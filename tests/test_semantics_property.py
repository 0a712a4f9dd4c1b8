"""Property: any arrival order, split into pushes and number of concurrent writers gives the reference."""

from __future__ import annotations

import os
import random
import threading
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feast_sequence import sequence_settings
from feast_sequence.feast_internals import store_provider

from reference import reference_sequences
from repos import applied_store, sequence_online
from sample_repo import objects

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

event_strategy = st.tuples(
    st.integers(0, 3),  # user: few users, so sequences overflow max_length
    st.sampled_from(["a", "b", "c", "d", "é", ""]),  # item: collisions exercise dedup_by
    st.integers(-3, 3),  # n
    st.sampled_from([0.0, 1.5, -2.25]),  # price
    st.booleans(),
    st.integers(0, 12),  # timestamp in seconds: many ties
)


# Compaction thresholds: never (the tail alone, format 2's layout), after every append (every
# sequence is a block plus a fresh tail), and every few events (compactions at arbitrary points).
@pytest.fixture(scope="module", params=[0, 1, 3], ids=["no-compaction", "compact-always", "compact-after-3"])
def property_store(request, tmp_path_factory, redis_server):
    repo = tmp_path_factory.mktemp("property")
    online = sequence_online(redis_server.connection_string, compact_after=request.param)
    return applied_store(repo, "property", online, objects(repo / "events"))


def push_concurrently(store, frames, writers):
    """Push the frames from `writers` threads, each with its own FeatureStore client."""
    from feast import FeatureStore

    queues = [frames[i::writers] for i in range(writers)]
    errors = []

    def work(chunk):
        client = FeatureStore(repo_path=str(store.repo_path)) if writers > 1 else store
        try:
            for frame in chunk:
                client.push("clicks_push", frame)
            # the compactions its pushes left to its store's worker (they raced the other writers)
            store_provider(client).online_store.drain_compactions(timeout_seconds=30)
        except Exception as exc:  # re-raised below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(q,)) for q in queues]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# 30 histories per threshold under `make test`; `make soak` runs FEAST_SEQUENCE_SOAK_EXAMPLES of them.
@settings(
    max_examples=int(os.environ.get("FEAST_SEQUENCE_SOAK_EXAMPLES") or 30),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(event_strategy, min_size=1, max_size=40),
    duplicate_share=st.floats(0, 0.5),
    split_seed=st.integers(0, 2**16),
    writers=st.integers(1, 3),
)
def test_served_sequences_equal_the_reference(property_store, redis_server, rows, duplicate_share, split_seed, writers):
    redis_server.client().flushall()
    rng = random.Random(split_seed)
    arrivals = rows + [r for r in rows if rng.random() < duplicate_share]
    rng.shuffle(arrivals)
    df = pd.DataFrame(arrivals, columns=["user_id", "item", "n", "price", "flag", "ts"])
    df["ts"] = [T0 + timedelta(seconds=s) for s in df["ts"]]
    cuts = sorted(rng.sample(range(1, len(df)), min(len(df) - 1, rng.randint(0, 4)))) if len(df) > 1 else []
    frames = [part for part in _split(df, cuts) if len(part)]
    push_concurrently(property_store, frames, writers)
    if property_store.config.online_store.compact_after == 1:  # every sequence was compacted
        assert redis_server.client().keys("*}:c"), "no sequence was compacted"

    users = sorted({r[0] for r in rows})
    fields = ("item", "n", "price", "flag", "ts")
    for view in ("clicks", "clicks_dedup"):
        settings_ = sequence_settings(property_store.get_feature_view(view))
        reference = reference_sequences(
            settings_,
            [
                {
                    "entity": u,
                    "item": i,
                    "n": n,
                    "price": p,
                    "flag": f,
                    "timestamp_us": s * 1_000_000 + int(T0.timestamp() * 1e6),
                }
                for u, i, n, p, f, s in rows
            ],
        )
        served = property_store.get_online_features(
            features=[f"{view}:{f}" for f in fields], entity_rows=[{"user_id": u} for u in users]
        ).to_dict()
        for position, user in enumerate(users):
            expected = reference.get(user, [])
            got = list(zip(*(served[f][position] for f in fields)))
            want = [
                (
                    e["item"],
                    e["n"],
                    e["price"],
                    e["flag"],
                    datetime.fromtimestamp(e["timestamp_us"] // 1_000_000, timezone.utc),
                )
                for e in expected
            ]
            assert got == want, f"view {view}, user {user}"


def _split(df, cuts):
    bounds = [0, *cuts, len(df)]
    return [df.iloc[a:b] for a, b in zip(bounds, bounds[1:])]
