"""Training data equals serving: get_historical_features against the online store and a reference."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from feast_sequence import sequence_settings
from feast_sequence.definitions.columns import QUERY_TIME_US, ROW_ID
from feast_sequence.offline.historical import PandasEngine, SparkEngine, spark_session

from reference import comparable, reference_sequences, retail_records
from repos import online_chunks

FIELDS = ["invoice", "item_id", "quantity", "unit_price", "event_timestamp"]


def test_training_data_at_t_equals_online_for_every_customer(retail_replayed, retail_events):
    store = retail_replayed
    customers = sorted(set(retail_events.purchases["customer_id"]) | set(retail_events.returns["customer_id"]))
    t = retail_events.purchases["event_timestamp"].max() + timedelta(days=1)
    entity_df = pd.DataFrame({"customer_id": customers, "event_timestamp": t})
    refs = [f"{view}:{f}" for view in ("customer_purchases", "customer_returns") for f in FIELDS]
    training = store.get_historical_features(entity_df=entity_df, features=refs, full_feature_names=True).to_df()
    assert training["customer_id"].tolist() == customers
    mismatches = []
    for start, chunk, online in online_chunks(store, refs, "customer_id", customers, 1000):
        for i, customer in enumerate(chunk):
            row = training.iloc[start + i]
            for ref in refs:
                column = ref.replace(":", "__")
                if comparable(online[column][i]) != comparable(row[column]):
                    mismatches.append((customer, column))
    assert not mismatches, f"{len(mismatches)} differences, e.g. {mismatches[:5]}"


def test_training_data_at_sampled_times_equals_the_reference(retail_store, retail_events):
    events = retail_events.purchases
    rng = np.random.default_rng(5)
    customers = rng.choice(events["customer_id"].unique(), 150, replace=False)
    low, high = events["event_timestamp"].min().value, events["event_timestamp"].max().value
    times = pd.to_datetime(rng.integers(low, high, len(customers)), utc=True).floor("min")
    entity_df = pd.DataFrame({"customer_id": customers, "event_timestamp": times})
    training = retail_store.get_historical_features(
        entity_df=entity_df, features=[f"customer_purchases:{f}" for f in FIELDS], full_feature_names=True
    ).to_df()
    settings = sequence_settings(retail_store.get_feature_view("customer_purchases"))
    for row in training.itertuples(index=False):
        as_of = pd.Timestamp(row.event_timestamp)
        as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of  # Feast's Spark join drops the zone
        mine = events[(events["customer_id"] == row.customer_id) & (events["event_timestamp"] <= as_of)]
        expected = reference_sequences(settings, retail_records(mine)).get(row.customer_id, [])
        assert len(expected) > 0 or mine.empty
        assert comparable(row.customer_purchases__item_id) == [e["item_id"] for e in expected]
        assert comparable(row.customer_purchases__quantity) == [e["quantity"] for e in expected]


def test_on_demand_views_over_sequences_agree_online_and_offline(retail_replayed):
    features = ["purchase_summary:purchase_lines", "purchase_summary:purchase_value"]
    online = retail_replayed.get_online_features(
        features=features, entity_rows=[{"customer_id": 13085}, {"customer_id": 12346}]
    ).to_dict()
    entity_df = pd.DataFrame({"customer_id": [13085, 12346], "event_timestamp": pd.Timestamp("2011-01-01", tz="UTC")})
    offline = retail_replayed.get_historical_features(entity_df=entity_df, features=features).to_df()
    assert offline["purchase_lines"].tolist() == online["purchase_lines"]
    assert offline["purchase_value"].tolist() == pytest.approx(online["purchase_value"])


def test_spark_and_pandas_engines_agree(retail_store):
    view = retail_store.get_feature_view("customer_returns")
    settings = sequence_settings(view)
    rng = np.random.default_rng(9)
    n = 3000
    events = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 30, n),
            "invoice": [f"C{k}" for k in rng.integers(0, 200, n)],
            "item_id": [f"i{k}" for k in rng.integers(0, 40, n)],
            "quantity": rng.integers(-5, 5, n).astype("int32"),
            "unit_price": rng.choice([0.5, 1.25], n).astype("float32"),
            "event_timestamp": pd.to_datetime(1_600_000_000 + rng.integers(0, 500, n) * 60, unit="s", utc=True),
        }
    )
    times = pd.to_datetime(1_600_000_000 + rng.integers(0, 500, 400) * 60, unit="s", utc=True)
    queries = pd.DataFrame(
        {"customer_id": rng.integers(0, 35, 400), ROW_ID: range(400), QUERY_TIME_US: times.as_unit("us").asi8}
    )
    features = ["item_id", "quantity", "event_timestamp"]
    local = PandasEngine().compute(settings, features, events, queries).sort_values(ROW_ID).reset_index(drop=True)
    spark = spark_session(retail_store.config)
    distributed = SparkEngine(spark).compute(settings, features, spark.createDataFrame(events), queries)
    distributed = distributed.sort_values(ROW_ID).reset_index(drop=True)
    assert local[ROW_ID].tolist() == distributed[ROW_ID].tolist() == list(range(400))
    for f in features:
        assert [comparable(v) for v in local[f]] == [comparable(v) for v in distributed[f]], f


def test_one_user_with_100000_events(retail_store):
    view = retail_store.get_feature_view("customer_purchases")
    settings = sequence_settings(view)
    n = 100_000
    events = pd.DataFrame(
        {
            "customer_id": 1,
            "invoice": [str(k) for k in range(n)],
            "item_id": "x",
            "quantity": np.ones(n, dtype="int32"),
            "unit_price": np.ones(n, dtype="float32"),
            "event_timestamp": pd.to_datetime(1_600_000_000 + np.arange(n), unit="s", utc=True),
        }
    )
    queries = pd.DataFrame(
        {
            "customer_id": [1, 1],
            ROW_ID: [0, 1],
            QUERY_TIME_US: [(1_600_000_000 + 10) * 10**6, (1_600_000_000 + n) * 10**6],
        }
    )
    spark = spark_session(retail_store.config)
    out = SparkEngine(spark).compute(settings, ["invoice"], spark.createDataFrame(events), queries).sort_values(ROW_ID)
    assert list(out["invoice"].iloc[0]) == [str(k) for k in range(10, -1, -1)]
    assert list(out["invoice"].iloc[1]) == [str(k) for k in range(n - 1, n - 51, -1)]
