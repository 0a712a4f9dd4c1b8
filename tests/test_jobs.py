"""The offline indexing jobs on real Spark (local mode) and Redis: backfill, correction, event
selection and enrichment."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feast_sequence import sequence_settings
from feast_sequence.offline.historical import spark_session
from feast_sequence.transformations._job import open_view
from feast_sequence.transformations.backfill import run_backfill
from feast_sequence.transformations.correction import run_correction
from feast_sequence.transformations.enrichment import run_enrichment
from feast_sequence.transformations.selection import TopScored

from conftest import redis_state, replay
from reference import reference_sequences, retail_records

END = datetime(2010, 12, 10, tzinfo=timezone.utc)


def served(store, view, customers, fields=("item_id", "quantity")):
    out = store.get_online_features(
        features=[f"{view}:{f}" for f in fields], entity_rows=[{"customer_id": c} for c in customers]
    ).to_dict()
    return {c: list(zip(*(out[f][i] for f in fields))) for i, c in enumerate(customers)}


def expected(settings, events, customers):
    ref = reference_sequences(settings, retail_records(events))
    return {c: [(e["item_id"], e["quantity"]) for e in ref.get(c, [])] for c in customers}


def test_backfill_indexes_the_last_days_and_is_idempotent(retail_store, retail_events, redis_client, redis_server):
    context = open_view(str(retail_store.repo_path), "customer_purchases")
    summary = run_backfill(context, days=30, end=END)
    window = retail_events.purchases[
        (retail_events.purchases["event_timestamp"] >= END - timedelta(days=30))
        & (retail_events.purchases["event_timestamp"] <= END)
    ]
    assert summary.events_read == summary.events_written == len(window)
    customers = sorted(window["customer_id"].unique().tolist())
    assert served(retail_store, "customer_purchases", customers) == expected(context.settings, window, customers)
    state = redis_state(redis_client, retail_store)
    run_backfill(context, days=30, end=END)
    assert redis_state(redis_client, retail_store) == state


def test_a_backfill_that_selects_nothing_says_why(retail_store, redis_client, capsys):
    # The default end is now, years after the example data: the usual reason for an empty backfill.
    summary = run_backfill(open_view(str(retail_store.repo_path), "customer_purchases"), days=30)
    assert summary.events_written == 0
    out = capsys.readouterr().out
    assert "0 events selected" in out and "--end defaults to now, so for historical data pass --end within it" in out


def test_correction_restores_missed_and_removes_wrong_events(retail_store, retail_events, redis_client):
    purchases = retail_events.purchases
    replay(retail_store, purchases, "purchase_push")
    truth = redis_state(redis_client, retail_store)
    start, end = datetime(2010, 3, 1, tzinfo=timezone.utc), datetime(2010, 3, 31, 23, 59, tzinfo=timezone.utc)
    march = purchases[(purchases["event_timestamp"] >= start) & (purchases["event_timestamp"] <= end)]
    victim, invoice, item = _a_stored_event_between(retail_store, march, start, end)
    # Damage: an event the real-time path "missed" (the same replay without it, on a store whose
    # sequences were deleted), a wrongly indexed one, and one for a customer the source does not know.
    for key in redis_client.scan_iter(b"fsq:retail:customer_purchases:{*"):
        redis_client.delete(key)
    missed = (purchases["customer_id"] == victim) & (purchases["invoice"] == invoice) & (purchases["item_id"] == item)
    replay(retail_store, purchases[~missed], "purchase_push")
    assert redis_state(redis_client, retail_store) != truth
    wrong = march[march["customer_id"] == victim].head(1).assign(quantity=999)
    ghost = wrong.assign(customer_id=999_999)
    retail_store.push("purchase_push", pd.concat([wrong, ghost]))

    summary = run_correction(open_view(str(retail_store.repo_path), "customer_purchases"), start, end)
    assert summary.events_written >= len(march)
    assert redis_state(redis_client, retail_store) == truth


def _a_stored_event_between(store, events, start, end):
    """(customer, invoice, item) of an event of ``events`` that its customer's sequence holds."""
    for customer in events["customer_id"].unique()[:50]:
        out = store.get_online_features(
            features=[f"customer_purchases:{f}" for f in ("invoice", "item_id", "event_timestamp")],
            entity_rows=[{"customer_id": int(customer)}],
        ).to_dict()
        for invoice, item, ts in zip(out["invoice"][0], out["item_id"][0], out["event_timestamp"][0]):
            if start <= ts <= end:
                return int(customer), invoice, item
    raise AssertionError("no stored event in the range")


def test_top_scored_selection(retail_store, retail_events):
    context = open_view(str(retail_store.repo_path), "customer_purchases")
    run_backfill(context, days=60, end=END, selection=TopScored("quantity * unit_price", days=30, n=5))
    window = retail_events.purchases[
        (retail_events.purchases["event_timestamp"] >= END - timedelta(days=30))
        & (retail_events.purchases["event_timestamp"] <= END)
    ]
    customers = sorted(window["customer_id"].unique().tolist())[:200]
    # Every deduplicated event of the window (the reference with no length cap), then the best 5.
    uncapped = dataclasses.replace(context.settings, max_length=10**9)
    records = retail_records(window[window["customer_id"].isin(customers)])
    deduplicated = reference_sequences(uncapped, records)
    got = served(retail_store, "customer_purchases", customers, fields=("quantity", "unit_price"))
    for c in customers:
        scores = sorted(
            (float(np.float32(e["quantity"] * np.float32(e["unit_price"]))) for e in deduplicated[c]),
            reverse=True,
        )[:5]
        assert sorted((float(np.float32(q * np.float32(p))) for q, p in got[c]), reverse=True) == pytest.approx(scores)


def test_enrichment_fills_a_new_field_without_losing_realtime_events(
    retail_store, retail_events, redis_client, tmp_path
):
    from feast import Field
    from feast.types import String

    from feast_sequence import SequenceFeatureView

    replay(retail_store, retail_events.purchases[retail_events.purchases["customer_id"] < 12500], "purchase_push")
    view = retail_store.get_feature_view("customer_purchases")
    evolved = SequenceFeatureView(
        name="customer_purchases",
        entities=[retail_store.get_entity("customer")],
        source=retail_store.get_data_source("purchase_push"),
        schema=[Field(name=f.name, dtype=f.dtype.base_type) for f in view.features if f.name != "event_timestamp"]
        + [Field(name="description", dtype=String)],
        max_length=50,
        dedup_by=["invoice", "item_id"],
    )
    retail_store.apply([evolved])
    try:
        check_enrichment(retail_store, retail_events, tmp_path)
    finally:
        retail_store.apply([view])  # the repository is shared by the session's tests


def check_enrichment(retail_store, retail_events, tmp_path):
    customers = sorted(
        retail_events.purchases.loc[retail_events.purchases["customer_id"] < 12500, "customer_id"].unique().tolist()
    )
    before = served(retail_store, "customer_purchases", customers, fields=("item_id", "description"))
    assert all(d == "" for rows in before.values() for _, d in rows)

    live = (
        retail_events.purchases[retail_events.purchases["customer_id"] == customers[0]]
        .head(1)
        .assign(
            invoice="LIVE",
            event_timestamp=pd.Timestamp("2011-01-01", tz="UTC"),
            description="sent by the writer",
        )
    )
    retail_store.push("purchase_push", live)
    spark = spark_session(retail_store.config)
    table = spark.read.parquet(str(retail_store.repo_path / "data" / "items"))
    output = tmp_path / "enriched"
    context = open_view(str(retail_store.repo_path), "customer_purchases")
    summary = run_enrichment(context, table, "item_id", ["description"], str(output))
    assert summary.events_written > 0

    items = dict(zip(retail_events.items["item_id"], retail_events.items["description"]))
    after = served(retail_store, "customer_purchases", customers, fields=("item_id", "description", "invoice"))
    assert after[customers[0]][0] == (live["item_id"].iloc[0], "sent by the writer", "LIVE")
    for c in customers:
        rows = after[c] if c != customers[0] else after[c][1:]
        assert [d for _, d, _ in rows] == [items.get(i, "") for i, _, _ in rows]
    enriched = pd.read_parquet(output)
    assert "description" in enriched.columns and enriched["description"].notna().mean() > 0.99


def test_spark_submit_runs_a_job(retail_store, redis_server):
    spark_submit = Path(sys.executable).parent / "spark-submit"
    job = Path(__file__).resolve().parents[1] / "transformations" / "backfill.py"
    env = {
        **os.environ,
        "FEAST_SEQUENCE_REDIS": redis_server.connection_string,
        "PYSPARK_PYTHON": sys.executable,
    }
    result = subprocess.run(
        [
            str(spark_submit),
            "--master",
            "local[2]",
            str(job),
            "--repo",
            str(retail_store.repo_path),
            "--view",
            "customer_returns",
            "--days",
            "10",
            "--end",
            "2010-12-10",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[feast-sequence backfill] customer_returns:" in result.stdout
    assert "events/s" in result.stdout


def test_reindex_rebuilds_a_view_under_a_change_apply_refuses(
    tmp_path, retail_events, redis_server, redis_client, monkeypatch
):
    import shutil

    from feast import FeatureStore

    from feast_sequence.examples.retail import write_repo_data

    from conftest import PROJECT_ROOT, apply_repo

    repo = tmp_path / "feature_repo"
    shutil.copytree(PROJECT_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    write_repo_data(retail_events, repo / "data")
    apply_repo(repo, redis_server)
    monkeypatch.setenv("FEAST_SEQUENCE_REDIS", redis_server.connection_string)
    store = FeatureStore(repo_path=str(repo))
    store.push("purchase_push", retail_events.purchases.iloc[:3000])

    features = repo / "features.py"
    text = features.read_text()
    assert text.count('dedup_by=["invoice", "item_id"]') >= 1
    features.write_text(text.replace('dedup_by=["invoice", "item_id"]', 'dedup_by=["item_id"]', 1))
    bin_dir = Path(sys.executable).parent
    refused = subprocess.run(
        [str(bin_dir / "feast"), "-c", str(repo), "apply"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert refused.returncode != 0
    assert "feast-sequence reindex --repo <repo> --view customer_purchases" in refused.stdout + refused.stderr

    rebuilt = subprocess.run(
        [
            str(bin_dir / "feast-sequence"),
            "reindex",
            "--repo",
            str(repo),
            "--view",
            "customer_purchases",
            "--days",
            "30",
            "--end",
            END.isoformat(),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    fresh = FeatureStore(repo_path=str(repo))
    settings = sequence_settings(fresh.get_feature_view("customer_purchases"))
    assert settings.dedup_by == ("item_id",)
    window = retail_events.purchases[
        (retail_events.purchases["event_timestamp"] >= END - timedelta(days=30))
        & (retail_events.purchases["event_timestamp"] <= END)
    ]
    customers = sorted(window["customer_id"].unique().tolist())[:200]
    assert served(fresh, "customer_purchases", customers) == expected(settings, window, customers)


def test_write_spark_counts_the_events_written_as_tasks_end(retail_store, redis_client):
    """What the jobs' progress bars follow: a Spark accumulator the executors add to per batch."""
    import contextlib

    from feast_sequence.offline.indexing import write_spark

    context = open_view(str(retail_store.repo_path), "customer_returns")
    events = context.events(END - timedelta(days=10), END)
    polled = []

    @contextlib.contextmanager
    def watch(poll):
        polled.append(poll())
        yield
        polled.append(poll())

    written = write_spark(context.target, events, watch=watch)
    assert written.events > 0 and polled == [0, written.events]
