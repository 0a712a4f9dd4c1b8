"""`feast materialize` for sequence views: complete, incremental without shrinking, idempotent, and
merged with real-time events."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from conftest import redis_state

FIELDS = ["invoice", "item_id", "quantity", "unit_price", "event_timestamp"]
END = datetime(2011, 1, 1, tzinfo=timezone.utc)


def online(store, customers):
    refs = [f"customer_purchases:{f}" for f in FIELDS]
    out = {}
    for start in range(0, len(customers), 1000):
        chunk = customers[start : start + 1000]
        got = store.get_online_features(features=refs, entity_rows=[{"customer_id": c} for c in chunk]).to_dict()
        for i, c in enumerate(chunk):
            out[c] = [tuple(got[f][i]) for f in FIELDS]
    return out


def test_incremental_materialization_never_shrinks_and_keeps_realtime_events(retail_store, retail_events, redis_client):
    customers = sorted(retail_events.purchases["customer_id"].unique().tolist())
    realtime = pd.DataFrame(
        {
            "customer_id": [customers[0]],
            "invoice": ["RT-1"],
            "item_id": ["live"],
            "quantity": [1],
            "unit_price": [9.5],
            "event_timestamp": [pd.Timestamp("2010-12-31 23:00", tz="UTC")],
        }
    )
    retail_store.materialize(
        datetime(2009, 1, 1, tzinfo=timezone.utc),
        datetime(2010, 6, 1, tzinfo=timezone.utc),
        ["customer_purchases"],
    )
    retail_store.push("purchase_push", realtime)
    retail_store.materialize_incremental(END, ["customer_purchases"])
    incremental = online(retail_store, customers)
    assert incremental[customers[0]][1][0] == "live"  # the real-time event survived and leads

    state = redis_state(redis_client, retail_store)
    retail_store.materialize(datetime(2010, 6, 1, tzinfo=timezone.utc), END, ["customer_purchases"])  # re-run
    assert redis_state(redis_client, retail_store) == state

    # A single full run from an empty store gives the same sequences (the live event aside).
    redis_client.flushall()
    retail_store.materialize(datetime(2010, 9, 1, tzinfo=timezone.utc), END, ["customer_purchases"])
    retail_store.push("purchase_push", realtime)
    assert online(retail_store, customers) == incremental

    # And they are what training data says at END.
    training = retail_store.get_historical_features(
        entity_df=pd.DataFrame({"customer_id": customers, "event_timestamp": END}),
        features=["customer_purchases:item_id"],
    ).to_df()
    others = training[training["customer_id"] != customers[0]]
    assert {c: list(v) for c, v in zip(others["customer_id"], others["item_id"])} == {
        c: list(incremental[c][1]) for c in customers[1:]
    }


def test_materialize_on_the_file_offline_store_equals_the_reference(make_store, tmp_path):
    """The pandas path: a store on Feast's file offline store, materialized from a midpoint."""
    import numpy as np

    from sample_repo import assert_clicks_match_reference, objects

    store = make_store(objects(tmp_path / "events"))
    rng = np.random.default_rng(4)
    n = 600
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, 6, n),
            "item": [f"i{k}" for k in rng.integers(0, 12, n)],
            "n": rng.integers(0, 9, n).astype("int32"),
            "price": rng.choice([1.0, 2.0], n),
            "flag": rng.random(n) < 0.5,
            "ts": pd.to_datetime(1_700_000_000 + rng.integers(0, 100, n) * 60, unit="s", utc=True),
        }
    )
    events.to_parquet(tmp_path / "events" / "clicks.parquet")
    store.materialize(
        datetime(2023, 11, 14, 22, 40, tzinfo=timezone.utc),
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        ["clicks", "clicks_dedup"],
    )
    assert_clicks_match_reference(store, [events], users=6)
