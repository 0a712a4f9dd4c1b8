"""Online/offline consistency: the comparison's measures, and the `feast-sequence consistency` job on
real retail events, clean (100% match) and with each kind of fault injected (exact counts)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from feast.data_source import PushMode

from feast_sequence.cli import main
from feast_sequence.monitoring.consistency import SequencePair, compare, not_served
from feast_sequence.monitoring.report import CAUSES
from feast_sequence.serving import serving_log
from feast_sequence.transformations.consistency_job import run_consistency

import retail_logged_repo


def _pair(ids, enriched=None, times=None) -> SequencePair:
    ids = [(i,) for i in ids]
    return SequencePair(ids, enriched or [()] * len(ids), times or [float(-k) for k in range(len(ids))])


def _causes(got):
    return {cause: got[cause] for cause in CAUSES if got[cause]}


def test_equal_sequences_match_exactly():
    got = compare(_pair("abc"), _pair("abc"), 100.0, 20)
    assert got["exact_match"] and got["edit_distance"] == 0 and got["length_diff"] == 0
    assert _causes(got) == {} and math.isnan(got["online_lag_s"])


def test_inserts_and_deletes_are_counted_apart():
    # Online lacks the newest offline event "n" (never pushed) and has "x" the batch lacks.
    online = _pair("xabc", times=[50.0, 40.0, 30.0, 20.0])
    offline = _pair("nabc", times=[60.0, 40.0, 30.0, 20.0])
    got = compare(online, offline, request_s=100.0, length=20)
    assert (got["deletes"], got["inserts"], got["edit_distance"]) == (1, 1, 2)
    assert (got["online_only"], got["offline_only"], got["length_diff"]) == (1, 1, 0)
    assert _causes(got) == {"online_only_unbatched": 1, "offline_only_lost": 1}
    assert math.isnan(got["online_lag_s"])  # nothing late: a lost event has no lag
    assert not got["exact_match"]


def test_an_event_pushed_online_only_displaces_the_oldest_from_a_full_sequence():
    """The issue's case: one event pushed online only, into a sequence a use case reads with
    length=20, pushes the oldest out; that one is displaced, not lost, and nothing was late."""
    older = [f"o{k}" for k in range(20)]
    online = SequencePair([("new",)] + [(o,) for o in older[:19]], [()] * 20, [100.0] + [-k for k in range(19)])
    offline = SequencePair([(o,) for o in older], [()] * 20, [-k for k in range(20)])
    got = compare(online, offline, request_s=200.0, length=20)
    assert (got["online_only"], got["offline_only"]) == (1, 1)
    assert _causes(got) == {"online_only_unbatched": 1, "offline_only_displaced": 1}
    assert math.isnan(got["online_lag_s"])


def test_an_event_missing_online_displaces_the_oldest_from_the_full_offline_sequence():
    online = _pair("abcd", times=[40.0, 30.0, 20.0, 10.0])
    offline = _pair("nabc", times=[60.0, 40.0, 30.0, 20.0])
    got = compare(online, offline, request_s=100.0, length=4)
    assert _causes(got) == {"online_only_displaced": 1, "offline_only_lost": 1}


def test_an_older_missing_event_of_a_sequence_shorter_than_its_length_is_not_displaced():
    online = _pair("xab", times=[50.0, 40.0, 30.0])
    offline = _pair("abc", times=[40.0, 30.0, 20.0])
    assert _causes(compare(online, offline, 100.0, length=4)) == {"online_only_unbatched": 1, "offline_only_lost": 1}


def test_an_event_in_the_online_store_now_was_pushed_late_and_its_lag_is_measured():
    online = _pair("abc", times=[40.0, 30.0, 20.0])
    offline = _pair("nabc", times=[60.0, 40.0, 30.0, 20.0])
    assert not_served(online, offline, 20) == [("n",)]
    got = compare(online, offline, request_s=100.0, length=20, online_now={("n",), ("a",)})
    assert _causes(got) == {"offline_only_late": 1}
    assert got["online_lag_s"] == 40.0  # request 100, the late event's time 60


def test_an_online_event_timestamped_after_the_request_is_ahead():
    online = _pair("fab", times=[150.0, 40.0, 30.0])
    offline = _pair("ab", times=[40.0, 30.0])
    assert _causes(compare(online, offline, request_s=100.0, length=20)) == {"online_only_ahead": 1}


def test_a_reordered_event_is_one_delete_and_one_insert_but_not_missing():
    got = compare(_pair("abc"), _pair("bac"), 0.0, 20)
    assert (got["deletes"], got["inserts"], got["online_only"], got["offline_only"]) == (1, 1, 0, 0)


def test_enrichment_mismatches_are_not_edits():
    online = _pair("ab", enriched=[("old",), ("same",)])
    offline = _pair("ab", enriched=[("new",), ("same",)])
    got = compare(online, offline, 0.0, 20)
    assert got["enrichment_mismatches"] == 1 and got["edit_distance"] == 0 and not got["exact_match"]


def test_longer_online_sequence():
    got = compare(_pair("abcd"), _pair("bd"), 0.0, 20)
    assert (got["length_diff"], got["deletes"], got["inserts"], got["online_only"]) == (2, 2, 0, 2)


def test_every_cause_is_documented_with_the_words_the_report_uses():
    page = (Path(__file__).resolve().parents[1] / "docs" / "monitoring.md").read_text()
    for cause, meaning in CAUSES.items():
        assert f"`{cause}`" in page and meaning in page, cause


# --- the job on real retail events -------------------------------------------------------------

CUSTOMERS = retail_logged_repo.CUSTOMERS


@pytest.fixture(scope="module")
def retail(tmp_path_factory, retail_events, redis_server):
    redis_server.client().flushall()
    root = tmp_path_factory.mktemp("consistency") / "repo"
    built = retail_logged_repo.build(root, retail_events, redis_server.connection_string)
    serving_log.configure(flush_interval_s=0.05)
    yield built
    serving_log.configure()


def _serve_all(store, customers) -> None:
    rows = [{"customer_id": c} for c in customers]
    for name in ("purchase_history", "purchase_ranking"):
        store.get_online_features(features=store.get_feature_service(name), entity_rows=rows)
    assert serving_log.flush()


def test_nothing_injected_matches_fully(retail, tmp_path):
    store, _, customers, _, _ = retail
    start = pd.Timestamp.now(tz="UTC").to_pydatetime()
    _serve_all(store, customers)
    run = run_consistency(store, tmp_path, start=start)
    assert run.passed, run.summary["failures"]
    for name in ("purchase_history", "purchase_ranking"):
        stats = run.summary["use_cases"][name]
        assert stats["configuration_changes"] == 0
        view = stats["views"]["purchases"]
        assert view["rows"] == CUSTOMERS and view["exact_match_rate"] == 1.0, view
    assert (pd.read_parquet(tmp_path / "rows.parquet")["online_length"] > 0).all()


def _purchases(customer, invoices, item_id, times) -> pd.DataFrame:
    """Purchase lines of ``customer``, one per invoice, as the purchase push takes them."""
    return pd.DataFrame(
        {
            "customer_id": [customer] * len(invoices),
            "invoice": invoices,
            "item_id": [item_id] * len(invoices),
            "quantity": pd.Series(range(1, len(invoices) + 1), dtype="int32"),
            "unit_price": pd.Series([1.0] * len(invoices), dtype="float32"),
            "event_timestamp": pd.DatetimeIndex(times).as_unit("us"),
        }
    )


def test_an_event_pushed_online_only_is_not_blamed_for_the_event_it_displaced(retail, tmp_path):
    """The issue's case: one event pushed online only, into a sequence the ranking use case reads
    with length=10, pushes its oldest event out: one online-only event, one displaced, none lost or late."""
    store, data, customers, purchases, _ = retail
    start = pd.Timestamp.now(tz="UTC").to_pydatetime()
    lines = purchases[purchases["quantity"] > 0].drop_duplicates(["customer_id", "invoice", "item_id"])
    full = lines.groupby("customer_id").size()
    customer = next(c for c in customers[4:] if full[c] > 10)  # the ranking's length is 10: its sequence is full
    newest = _purchases(customer, ["N0"], lines["item_id"].iloc[0], [pd.Timestamp("2011-06-01", tz="UTC")])
    store.push("purchase_push", newest, to=PushMode.ONLINE)
    store.get_online_features(
        features=store.get_feature_service("purchase_ranking"), entity_rows=[{"customer_id": customer}]
    )
    assert serving_log.flush()
    run = run_consistency(store, tmp_path, start=start, use_cases=["purchase_ranking"])
    view = run.summary["use_cases"]["purchase_ranking"]["views"]["purchases"]
    assert (view["rows"], view["exact_matches"]) == (1, 0)
    assert (view["online_only_events"], view["online_only_unbatched"]) == (1, 1)
    assert (view["offline_only_events"], view["offline_only_displaced"]) == (1, 1)
    assert view["offline_only_lost"] == view["offline_only_late"] == 0
    assert view["online_lag_s"]["rows"] == 0  # nothing was late
    # The batch gets the event too: the later tests see a consistent customer.
    retail_logged_repo.write_parquet(data / "purchases" / "part-displacing.parquet", newest)


def test_a_range_with_no_logs_fails_the_gate_unless_allowed(retail, tmp_path):
    store, _, _, _, _ = retail
    future = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=365)).isoformat()
    args = ["consistency", "--repo", str(store.repo_path), "--use-case", "purchase_history", "--start", future]
    assert main([*args, "--out", str(tmp_path / "strict")]) == 1
    summary = json.loads((tmp_path / "strict" / "summary.json").read_text())
    assert summary["failures"] == [
        f"use case 'purchase_history': no logged rows from {summary['start']} to {summary['end']}, so nothing "
        "was checked: check the range and that the use case serves with a sample_rate above 0 "
        "(pass --allow-empty to accept)"
    ]
    assert summary["validation"]["success"] is False
    assert main([*args, "--out", str(tmp_path / "allowed"), "--allow-empty"]) == 0


def test_injected_faults_are_counted_exactly(retail, tmp_path):
    store, data, customers, purchases, items = retail
    start = pd.Timestamp.now(tz="UTC").to_pydatetime()
    lost, unpushed, stale, late = customers[0], customers[1], customers[2], customers[3]
    ordinary = purchases[purchases["customer_id"] == lost].iloc[0]
    later = pd.Timestamp("2011-01-01", tz="UTC")
    times = [later + pd.Timedelta(minutes=k) for k in range(3)]

    # 1. Three purchases reach the online store only: the batch source never gets them.
    online_only = _purchases(lost, ["T0", "T1", "T2"], ordinary["item_id"], times)
    store.push("purchase_push", online_only, to=PushMode.ONLINE)
    # 2. Two purchases land in the batch source and are never pushed.
    batch_only = _purchases(unpushed, ["B0", "B1"], ordinary["item_id"], times[:2])
    retail_logged_repo.write_parquet(data / "purchases" / "part-batch-only.parquet", batch_only)
    # 3. One purchase lands in the batch source, and is pushed only after the requests.
    pushed_late = _purchases(late, ["L0"], ordinary["item_id"], times[:1])
    retail_logged_repo.write_parquet(data / "purchases" / "part-late.parquet", pushed_late)
    # 4. An item of one customer changes its catalogue entry in place, after its purchases were
    #    enriched at index time: what they were indexed with is stale.
    others = set(purchases.loc[purchases["customer_id"].isin([lost, unpushed, late]), "item_id"])
    others |= {ordinary["item_id"]}
    changed = next(i for i in purchases.loc[purchases["customer_id"] == stale, "item_id"] if i not in others)
    catalogue = items.assign(description=items["description"].where(items["item_id"] != changed, "CHANGED"))
    (data / "items" / "part-0.parquet").unlink()
    retail_logged_repo.write_parquet(data / "items" / "part-1.parquet", catalogue)
    stale_events = purchases[purchases["item_id"] == changed].drop_duplicates(["customer_id", "invoice", "item_id"])
    affected = {lost, unpushed, late} | set(stale_events["customer_id"])

    _serve_all(store, customers)
    store.push("purchase_push", pushed_late, to=PushMode.ONLINE)
    # 5. The ranking use case is changed by `feast apply` between the log and the check.
    store.apply(retail_logged_repo.objects(data, ranking_length=5))

    out = tmp_path / "report"
    code = main(["consistency", "--repo", str(store.repo_path), "--start", start.isoformat(), "--out", str(out)])
    assert code == 1  # the gate fails: purchase_history is no longer an exact match
    summary = json.loads((out / "summary.json").read_text())
    history = summary["use_cases"]["purchase_history"]
    view = history["views"]["purchases"]
    assert history["configuration_changes"] == 0
    assert view["rows"] == CUSTOMERS
    assert view["online_only_events"] == view["online_only_unbatched"] == 3 and view["deletes"] == 3
    assert view["offline_only_events"] == 3 and view["inserts"] == 3
    assert (view["offline_only_lost"], view["offline_only_late"], view["offline_only_displaced"]) == (2, 1, 0)
    assert view["online_only_ahead"] == view["online_only_displaced"] == 0
    assert view["enrichment_mismatches"] == len(stale_events) > 0
    assert view["exact_matches"] == CUSTOMERS - len(affected)
    request_s = pd.read_parquet(out / "rows.parquet").set_index("offline_only_late")["request_time"].loc[1]
    assert view["online_lag_s"]["rows"] == 1  # the late push, and no other event
    assert view["online_lag_s"]["max"] == pytest.approx((request_s - times[0]).total_seconds())
    ranking = summary["use_cases"]["purchase_ranking"]
    assert ranking["configuration_changes"] == CUSTOMERS and ranking["views"] == {}  # not skew
    assert summary["validation"]["success"] is False
    page = (out / "report.html").read_text()
    assert "<svg" in page and "purchase_history" in page and "Configuration changes" in page
    assert "never pushed or lost" in page and "pushed after the request" in page


def test_rows_served_before_a_narrower_window_are_configuration_changes_not_skew(retail, tmp_path):
    """Training data replays the current definition at every time: rows logged while the view kept
    50 events differ from it once max_length is 5, and are set apart, as a use case's own change is."""
    store, data, customers, _, _ = retail
    start = pd.Timestamp.now(tz="UTC").to_pydatetime()
    _serve_all(store, customers)
    store.apply(retail_logged_repo.objects(data, ranking_length=5, max_length=5))
    run = run_consistency(store, tmp_path, start=start)
    history = run.summary["use_cases"]["purchase_history"]
    assert history["configuration_changes"] == CUSTOMERS and history["views"] == {}
