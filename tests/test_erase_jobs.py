"""Erased customers stay erased through every batch writer on real Spark and Redis (backfill from the
unchanged source, correction, materialization, streaming) and are absent from training data, though
the offline source still holds their events."""

from __future__ import annotations

import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest
from landing import land

from feast_sequence import erase, get_training_data, sequence_settings
from feast_sequence.offline.erasures import erasures_folder
from feast_sequence.offline.historical import spark_session
from feast_sequence.transformations._job import open_view
from feast_sequence.transformations.backfill import run_backfill
from feast_sequence.transformations.correction import run_correction
from feast_sequence.transformations.enrichment import run_enrichment
from feast_sequence.transformations.reindex import run_reindex
from feast_sequence.transformations.streaming import FileStream, job_spark_session, run_stream

from reference import reference_sequences, retail_records
from repos import applied_store, sequence_online, spark_offline
from sample_repo import events, objects

END = datetime(2010, 12, 10, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
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
    cut = END - timedelta(days=DAYS // 2)
    purchases = retail_events.purchases[retail_events.purchases["event_timestamp"] <= END]
    # A customer with fewer events than max_length, on both sides of the cut: the erase shows.
    sides = purchases.groupby("customer_id")["event_timestamp"].agg(["min", "max", "size"])
    fitting = sides[(sides["min"] <= cut) & (sides["max"] > cut) & (sides["size"] < 40)]
    erased, kept = int(fitting.index[0]), int(fitting.index[1])
    entity_df = pd.DataFrame({"customer_id": [erased, kept], "event_timestamp": [END, END]})
    settings = sequence_settings(store.get_feature_view("customer_purchases"))

    def training():
        frame = store.get_historical_features(entity_df=entity_df, features=["customer_purchases:item_id"]).to_df()
        return {c: list(v) if v is not None else [] for c, v in zip(frame["customer_id"], frame["item_id"])}

    def reference(customer, after):
        purchases = retail_events.purchases
        events = purchases[
            (purchases["customer_id"] == customer)
            & (purchases["event_timestamp"] > after)
            & (purchases["event_timestamp"] <= END)
        ]
        return [e["item_id"] for e in reference_sequences(settings, retail_records(events)).get(customer, [])]

    before = training()
    assert before[erased] == reference(erased, EPOCH) and before[kept] == reference(kept, EPOCH)
    erase(store, [{"customer_id": erased}], before=cut)
    after = training()
    assert after == {erased: reference(erased, cut), kept: before[kept]}
    assert after[erased] != before[erased]


def test_the_streaming_job_drops_an_erased_users_events_and_says_so(tmp_path, redis_client, redis_server):
    repo = tmp_path / "repo"
    stream_store = applied_store(
        repo, "stream", sequence_online(redis_server.connection_string), objects(repo / "data"), offline=spark_offline()
    )
    erase(stream_store, [{"user_id": 1}])
    start = pd.Timestamp("2024-01-01", tz="UTC")
    rows = [(u, f"item{i}", i, 1.0, False, start + timedelta(minutes=i)) for u in (1, 2) for i in range(6)]
    clicks = events(rows).astype({"n": "int32"})  # parquet files must carry the view's types
    land(clicks, tmp_path / "landing", "clicks", "parquet")
    context = open_view(str(repo), "clicks")
    stream = run_stream(
        context,
        job_spark_session(context),
        FileStream(str(tmp_path / "landing"), "parquet"),
        str(tmp_path / "checkpoint"),
        available_now=True,
    )
    assert stream.wait(timeout_seconds=120)
    summary = stream.progress.summary()
    assert summary.events_written == 12 and summary.events_erased == 6
    out = stream_store.get_online_features(features=["clicks:item"], entity_rows=[{"user_id": 1}, {"user_id": 2}])
    items = out.to_dict()["item"]
    assert (items[0] or []) == [] and items[1] == ["item5", "item4", "item3", "item2", "item1"]


@pytest.fixture
def repository_state_restored(store, monkeypatch) -> Iterator[None]:
    """``run_reindex`` reads the repository as `feast apply` does: it changes to the repository's
    folder, puts it first on sys.path and imports its modules (``features``) by name. Run in this
    process, that outlived the test: a later in-process parse of another repository found a
    ``features`` module already imported and reused this one. The working directory, sys.path and
    the modules imported from the repository are put back afterwards."""
    monkeypatch.chdir(Path.cwd())  # only to have the working directory restored
    monkeypatch.setattr(sys, "path", list(sys.path))
    repo = Path(store.repo_path).resolve()
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        source = getattr(sys.modules[name], "__file__", None)
        if source and Path(source).resolve().is_relative_to(repo):
            del sys.modules[name]


def test_a_reindex_does_not_bring_an_erased_customer_back(store, retail_events, repository_state_restored):
    erased, kept, erased_events = window_customers(retail_events)
    erase(store, [{"customer_id": erased}])
    summary = run_reindex(str(store.repo_path), "customer_purchases", days=DAYS, end=END)
    assert summary.events_erased == erased_events and "dropped as erased" in str(summary)
    after = served(store, [erased, kept])
    assert after[erased] == [] and after[kept]


def test_enrichment_leaves_an_erased_customer_out_online_and_in_its_offline_copy(store, retail_events, tmp_path):
    erased, kept, _ = window_customers(retail_events)
    context = open_view(str(store.repo_path), "customer_purchases")
    run_backfill(context, days=DAYS, end=END)
    before = served(store, [erased, kept])
    erase(store, [{"customer_id": erased}])
    spark = spark_session(store.config)
    prices = spark.read.parquet(str(store.repo_path / "data" / "items")).withColumnRenamed("price", "unit_price")
    output = tmp_path / "enriched"
    run_enrichment(context, prices, "item_id", ["unit_price"], str(output), overwrite=True)
    assert served(store, [erased, kept]) == {erased: [], kept: before[kept]}
    copied = set(pd.read_parquet(output, columns=["customer_id"])["customer_id"])
    source = set(retail_events.purchases["customer_id"])
    assert erased in source and erased not in copied and kept in copied


def test_a_use_cases_training_data_leaves_out_erased_events_the_source_still_holds(store, retail_events):
    returns = retail_events.returns[retail_events.returns["event_timestamp"] <= END]
    counts = returns.groupby("customer_id").size()
    erased, kept = (int(c) for c in counts[counts >= 2].index[:2])
    entity_df = pd.DataFrame({"customer_id": [erased, kept], "event_timestamp": [END, END]})

    def training():
        frame = get_training_data(store, entity_df, "return_alerts").to_df()
        return {int(r["customer_id"]): r for r in frame.to_dict("records")}

    before = training()
    assert len(before[erased]["item_id"]) == min(3, counts[erased])
    erase(store, [{"customer_id": erased}])
    after = training()
    assert len(after[erased]["item_id"]) == 0
    assert list(after[kept]["item_id"]) == list(before[kept]["item_id"]) and len(before[kept]["item_id"]) > 0
    assert (retail_events.returns["customer_id"] == erased).any()  # the source still holds them
