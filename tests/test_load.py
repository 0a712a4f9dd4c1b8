"""Sustained load: pushes and reads at a fixed rate; memory and key count plateau instead of growing
with the number of events (trimming bounds each sequence, TTL removes inactive entities)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from feast_sequence.storage.keys import zset_key_of

from repos import click_view, push_source, user


def test_memory_and_keys_plateau_under_sustained_load(make_store, tmp_path, redis_client):
    source = push_source("load", tmp_path, {"user_id": "int64", "item": "string", "n": "int32"})
    view = click_view(name="load", source=source, max_length=20, ttl=timedelta(seconds=2))  # (item, n) events
    store = make_store([user, view])
    rng = np.random.default_rng(0)
    samples, pushed, reads = [], 0, 0
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < 12:
        now = datetime.now(timezone.utc)
        # Active users drift: 100 users active per second, new ids every second, so old keys go idle.
        second = int(time.monotonic() - start)
        users = second * 100 + rng.integers(0, 100, 200)
        store.push(
            "load_push",
            pd.DataFrame(
                {
                    "user_id": users,
                    "item": [f"i{k}" for k in rng.integers(0, 1000, 200)],
                    "n": rng.integers(0, 9, 200).astype("int32"),
                    "ts": now,
                }
            ),
        )
        pushed += 200
        out = store.get_online_features(
            features=["load:item"], entity_rows=[{"user_id": int(u)} for u in users[:50]]
        ).to_dict()
        reads += 1
        assert all(len(items) <= 20 for items in out["item"])
        if tick % 10 == 0:
            samples.append(
                (time.monotonic() - start, _sequences(redis_client), redis_client.info("memory")["used_memory"])
            )
        tick += 1
        time.sleep(max(0.0, start + tick * 0.05 - time.monotonic()))  # 20 pushes and reads per second
    late = [s for s in samples if s[0] > 6]
    early_peak_keys = max(k for t, k, _ in samples if 3 <= t <= 6)
    assert pushed >= 20_000 and reads >= 100  # sustained, even on a busy machine
    # Sequences: ~100 users x 3 active seconds at most, not one per user ever seen (1,200 by the end).
    assert max(k for _, k, _ in late) <= 1.5 * early_peak_keys < 600
    # Memory: the late maximum stays within 50% of the mid-run level while events keep doubling.
    mid_memory = max(m for t, _, m in samples if 3 <= t <= 6)
    assert max(m for _, _, m in late) <= 1.5 * mid_memory


def _sequences(client) -> int:
    """Stored sequences: a sequence has up to three keys (tail, identity hash, compacted block)."""
    return len({zset_key_of(k) for k in client.scan_iter(match=b"fsq:*:{*", count=1000)})
