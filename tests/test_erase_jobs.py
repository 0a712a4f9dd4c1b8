"""Erased customers stay erased through every batch writer on real Spark and Redis (backfill from the
unchanged source, correction, materialization) and are absent from training data, though
the offline source still holds their events."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from feast_sequence import erase
from feast_sequence.offline.erasures import erasures_folder
from feast_sequence.transformations._job import open_view
from feast_sequence.transformations.backfill import run_backfill
from feast_sequence.transformations.correction import run_correction

END = datetime(2010, 12, 10, tzinfo=timezone.utc)
DAYS = 30


@pytest.fixture
def store(retail_store):
    """The retail store; its repository is shared by the session, so its erasures go afterwards."""
    yield retail_store
    shutil.rmtree(erasures_folder(retail_store.config), ignore_errors=True)


def served(store, customers):
    out = store.get_online_features(
        features=["customer_purchases:item_id"], entity_rows=[{"customer_id": c} for c in customers]
    ).to_dict()
    return {c: out["item_id"][i] or [] for i, c in enumerate(customers)}


def window_customers(retail_events):
    purchases = retail_events.purchases
    window = purchases[
        (purchases["event_timestamp"] >= END - timedelta(days=DAYS)) & (purchases["event_timestamp"] <= END)
    ]
    counts = window.groupby("customer_id").size().sort_values(ascending=False)
    return int(counts.index[0]), int(counts.index[1]), int(counts.iloc[0])


def test_a_backfill_from_the_unchanged_source_does_not_bring_an_erased_customer_back(store, retail_events):
    erased, kept, erased_events = window_customers(retail_events)
    context = open_view(str(store.repo_path), "customer_purchases")
    run_backfill(context, days=DAYS, end=END)
    before = served(store, [erased, kept])
    assert before[erased] and before[kept]

    erase(store, [{"customer_id": erased}])
    assert served(store, [erased, kept]) == {erased: [], kept: before[kept]}

    # The store drops the erased customer's events and the job's summary says so.
    summary = run_backfill(context, days=DAYS, end=END)
    assert summary.events_erased == erased_events
    assert "dropped as erased" in str(summary)
    assert served(store, [erased, kept]) == {erased: [], kept: before[kept]}


def test_materialization_and_correction_leave_an_erased_customer_out(store, retail_events):
    erased, kept, _ = window_customers(retail_events)
    erase(store, [{"customer_id": erased}])
    store.materialize(END - timedelta(days=DAYS), END, ["customer_purchases"])
    after = served(store, [erased, kept])
    assert after[erased] == [] and after[kept]
    run_correction(open_view(str(store.repo_path), "customer_purchases"), END - timedelta(days=10), END)
    assert served(store, [erased, kept]) == after


def test_training_data_leaves_out_erased_events_the_source_still_holds(store, retail_events):
    erased, kept, _ = window_customers(retail_events)
    entity_df = pd.DataFrame({"customer_id": [erased, kept], "event_timestamp": [END, END]})

    def training():
        frame = store.get_historical_features(entity_df=entity_df, features=["customer_purchases:item_id"]).to_df()
        return {c: list(v) if v is not None else [] for c, v in zip(frame["customer_id"], frame["item_id"])}

    before = training()
    assert before[erased] and before[kept]
    erase(store, [{"customer_id": erased}], before=END - timedelta(days=DAYS))
    # Erased up to 30 days before END: only the events of the last 30 days are left for it.
    recent = retail_events.purchases[
        (retail_events.purchases["customer_id"] == erased)
        & (retail_events.purchases["event_timestamp"] > END - timedelta(days=DAYS))
    ]
    after = training()
    assert after[kept] == before[kept]
    assert after[erased] == [i for i in before[erased] if i in set(recent["item_id"])]
    assert 0 < len(after[erased]) < len(before[erased])
