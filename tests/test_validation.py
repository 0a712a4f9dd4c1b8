"""Great Expectations suites: clean data passes; data that breaks each expectation fails with a
message naming the expectation and the column; the real retail data's known problems are found."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from feast.value_type import ValueType

from feast_sequence import SequenceValidationError, sequence_settings
from feast_sequence.definitions.settings import EventField, SequenceSettings
from feast_sequence.validations.event_source import EventSourceChecks, validate_event_source
from feast_sequence.validations.sequences import SequenceChecks, validate_sequences
from feast_sequence.validations.training import validate_training

from conftest import sequence_key_count
from repos import click_settings

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)
SETTINGS = click_settings(max_length=5)
CHECKS = EventSourceChecks(
    allowed_values={"kind": ["view", "buy"]}, value_ranges={"n": (0, 100)}, max_duplicate_rate=0.05, now=NOW
)


def clean(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 5, rows),
            "kind": rng.choice(["view", "buy"], rows),
            "n": np.arange(rows, dtype="int32") % 100,
            "ts": [NOW - timedelta(hours=k) for k in range(rows)],
        }
    )


def broken(column, value, rows=(3,)):
    frame = clean().astype({column: object})
    for r in rows:
        frame.loc[r, column] = value
    return frame


def test_clean_events_pass():
    report = validate_event_source(SETTINGS, clean(), CHECKS)
    assert report.success, str(report)
    assert report.evaluated == 8  # key, time, time range, 2 types, a category, a range, uniqueness


@pytest.mark.parametrize(
    "frame, expectation, column",
    [
        (broken("user_id", None), "expect_column_values_to_not_be_null", "user_id"),
        (broken("ts", None), "expect_column_values_to_not_be_null", "ts"),
        (broken("ts", datetime(1999, 1, 1, tzinfo=timezone.utc)), "expect_column_values_to_be_between", "ts"),
        (broken("ts", NOW + timedelta(hours=1)), "expect_column_values_to_be_between", "ts"),
        (broken("n", "seven"), "expect_column_values_to_be_in_type_list", "n"),
        (broken("kind", "refund"), "expect_column_values_to_be_in_set", "kind"),
        (broken("n", 500), "expect_column_values_to_be_between", "n"),
        (pd.concat([clean(), clean().head(10)]), "expect_compound_columns_to_be_unique", "user_id,kind,n,ts"),
    ],
    ids=["null key", "null time", "too old", "future", "type", "category", "range", "duplicates"],
)
def test_each_broken_expectation_is_named(frame, expectation, column):
    report = validate_event_source(SETTINGS, frame, CHECKS)
    assert not report.success
    assert (expectation, column) in [(f.expectation, f.column) for f in report.failures]
    assert f"{expectation} on column {column!r}" in str(report)


def test_the_real_retail_data(tmp_path):
    """What the suite finds in the source, before the example repository's preparation."""
    from feast_sequence.examples.retail import RAW_FILE

    from conftest import PROJECT_ROOT

    raw = pd.read_parquet(PROJECT_ROOT / RAW_FILE)
    events = pd.DataFrame(
        {
            "customer_id": raw["Customer ID"],
            "invoice": raw["Invoice"].astype(str),
            "item_id": raw["StockCode"].astype(str),
            "quantity": raw["Quantity"].astype("int32"),
            "unit_price": raw["Price"].astype("float32"),
            "event_timestamp": pd.to_datetime(raw["InvoiceDate"]).dt.tz_localize("UTC"),
        }
    )
    settings = SequenceSettings(
        "customer_purchases",
        (("customer_id", ValueType.INT64),),
        (
            EventField("invoice", ValueType.STRING),
            EventField("item_id", ValueType.STRING),
            EventField("quantity", ValueType.INT32),
            EventField("unit_price", ValueType.FLOAT),
        ),
        "event_timestamp",
        50,
        (),
        None,
    )
    checks = EventSourceChecks(value_ranges={"quantity": (1, None)}, max_duplicate_rate=0.001)
    report = validate_event_source(settings, events, checks, report_dir=tmp_path / "report")
    found = {(f.expectation, f.column): f.unexpected for f in report.failures}
    assert found[("expect_column_values_to_not_be_null", "customer_id")] == 107_927  # anonymous lines
    assert found[("expect_column_values_to_be_between", "quantity")] == 12_326  # returns and adjustments
    duplicates = found[
        (
            "expect_compound_columns_to_be_unique",
            "customer_id,invoice,item_id,quantity,unit_price,event_timestamp",
        )
    ]
    assert duplicates > 6_865  # every row of a repeated group counts; the source has 6,865 extra copies
    assert report.report_path is not None and report.report_path.exists()


def test_indexed_sequences(retail_store, retail_events, redis_client):
    from conftest import replay

    replay(retail_store, retail_events.purchases[retail_events.purchases["customer_id"] < 12600], "purchase_push")
    settings = sequence_settings(retail_store.get_feature_view("customer_purchases"))
    checks = SequenceChecks(min_completeness={"item_id": 0.99})
    report = validate_sequences(settings, redis_client, retail_store.project, checks, sample=100)
    assert report.success, str(report)
    # Break the store behind its back: a sequence past max_length, with a repeated identity.
    key = next(k for k in redis_client.scan_iter(b"fsq:*:customer_purchases:*}:z"))
    members = redis_client.zrange(key, 0, -1, withscores=True)
    member, score = members[0]
    redis_client.zadd(key, {member + b"\x18\x07": score + 1})  # same identity prefix, one more field element
    report = validate_sequences(settings, redis_client, retail_store.project, checks)
    assert {f.column for f in report.failures} >= {"repeated_identities"} | (
        {"length"} if len(members) >= 50 else set()
    )
    from feast_sequence.cli import main

    assert main(["validate", "sequences", "--repo", str(retail_store.repo_path), "--view", "customer_purchases"]) == 1
    stale = validate_sequences(
        settings, redis_client, retail_store.project, SequenceChecks(max_newest_age_seconds=3600)
    )
    assert [f.column for f in stale.failures if f.expectation == "expect_column_min_to_be_between"] == ["newest_age_s"]


def test_training_sets():
    rows = pd.DataFrame(
        {
            "event_timestamp": [NOW, NOW, NOW],
            "clicks__ts": [
                [NOW - timedelta(hours=1)],
                [NOW - timedelta(hours=2), NOW - timedelta(hours=3)],
                [],
            ],
        }
    )
    assert validate_training(SETTINGS, rows, "clicks__ts").success
    leaking = rows.copy()
    leaking.at[1, "clicks__ts"] = [NOW + timedelta(minutes=1)]
    report = validate_training(SETTINGS, leaking, "clicks__ts")
    assert [(f.expectation, f.column) for f in report.failures] == [("expect_column_values_to_be_in_set", "leaks")]
    empty = rows.assign(clicks__ts=[[], [], [NOW]])
    report = validate_training(SETTINGS, empty, "clicks__ts")
    assert [(f.expectation, f.column) for f in report.failures] == [("expect_column_mean_to_be_between", "empty")]


def test_backfill_gate_refuses_a_failing_batch(retail_store, redis_client):
    from feast_sequence.transformations._job import open_view
    from feast_sequence.transformations.backfill import run_backfill

    def strict(settings, events):
        return validate_event_source(settings, events, EventSourceChecks(value_ranges={"quantity": (1000, None)}))

    context = open_view(str(retail_store.repo_path), "customer_purchases")
    with pytest.raises(SequenceValidationError, match=r"expect_column_values_to_be_between on column 'quantity'"):
        run_backfill(context, days=10, end=datetime(2010, 12, 10, tzinfo=timezone.utc), gate=strict)
    assert sequence_key_count(redis_client) == 0


def test_repeats_the_store_collapses_are_reported_not_failed_unless_bounded():
    """Repeated identities are normal for a view fed at least once: the store keeps one event per
    identity, so by default the suite reports them; a max_duplicate_rate turns the report into a rule."""
    exact = pd.concat([clean(), clean().head(10)])
    report = validate_event_source(SETTINGS, exact, EventSourceChecks(now=NOW))
    assert report.success, str(report)
    assert report.notes == (
        "10 events (20.0%) repeat an earlier event exactly (entity, fields and timestamp): the store keeps "
        "each event once; reported, not failed (set max_duplicate_rate, or --max-duplicate-rate, to bound it)",
    )
    assert "  note: 10 events (20.0%)" in str(report)

    dedup = dataclasses.replace(SETTINGS, dedup_by=("kind",))  # 5 users x 2 kinds: 10 identities
    report = validate_event_source(dedup, clean(), EventSourceChecks(now=NOW))
    assert report.success and "30 events (75.0%) repeat a dedup_by identity (kind)" in report.notes[0]
    bounded = validate_event_source(dedup, clean(), EventSourceChecks(max_duplicate_rate=0.5, now=NOW))
    assert [(f.expectation, f.column) for f in bounded.failures] == [
        ("expect_compound_columns_to_be_unique", "user_id,kind")
    ]
    assert validate_event_source(dedup, clean().drop_duplicates(["user_id", "kind"]), EventSourceChecks()).notes == ()


def test_backfill_validate_takes_the_duplicate_threshold():
    from feast_sequence.cli._options import gate_from
    from feast_sequence.cli.jobs import backfill, correct

    windows = [
        (backfill, ["--days", "1"]),
        (correct, ["--start", "2024-01-01", "--end", "2024-01-02"]),
    ]
    for command, window in windows:
        args = ["--view", "v", *window, "--validate", "--max-duplicate-rate", "0.2"]
        params = command.make_context(command.name, args).params
        gate = gate_from(params["validate"], params["report_dir"], params["max_duplicate_rate"])
        assert gate is not None and gate.checks.max_duplicate_rate == 0.2
    params = backfill.make_context("backfill", ["--view", "v", "--days", "1", "--validate"]).params
    assert gate_from(params["validate"], None, params["max_duplicate_rate"]).checks.max_duplicate_rate is None
