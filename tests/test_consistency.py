"""Online/offline consistency: the comparison's measures, and the `feast-sequence consistency` job on
real retail events, clean (100% match) and with each kind of fault injected (exact counts)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from feast.data_source import PushMode

from feast_sequence.cli import main
from feast_sequence.monitoring.consistency import SequencePair, compare
from feast_sequence.serving import serving_log
from feast_sequence.transformations.consistency_job import run_consistency

import retail_logged_repo


def _pair(ids, enriched=None, times=None) -> SequencePair:
    ids = [(i,) for i in ids]
    return SequencePair(ids, enriched or [()] * len(ids), times or [float(k) for k in range(len(ids))])


def test_equal_sequences_match_exactly():
    got = compare(_pair("abc"), _pair("abc"), 100.0, 200.0)
    assert got["exact_match"] and got["edit_distance"] == 0 and got["length_diff"] == 0
    assert math.isnan(got["online_lag_s"]) and math.isnan(got["offline_lag_s"])


def test_inserts_and_deletes_are_counted_apart():
    # Online lacks the newest offline event "n" (a lost push) and has "x" the batch lacks.
    online = _pair("xabc", times=[50.0, 40.0, 30.0, 20.0])
    offline = _pair("nabc", times=[60.0, 40.0, 30.0, 20.0])
    got = compare(online, offline, request_s=100.0, checked_s=1000.0)
    assert (got["deletes"], got["inserts"], got["edit_distance"]) == (1, 1, 2)
    assert (got["online_only"], got["offline_only"], got["length_diff"]) == (1, 1, 0)
    assert got["online_lag_s"] == 40.0  # request 100, oldest event online lacked at 60
    assert got["offline_lag_s"] == 950.0  # checked 1000, oldest event the batch lacks at 50
    assert not got["exact_match"]


def test_a_reordered_event_is_one_delete_and_one_insert_but_not_missing():
    got = compare(_pair("abc"), _pair("bac"), 0.0, 0.0)
    assert (got["deletes"], got["inserts"], got["online_only"], got["offline_only"]) == (1, 1, 0, 0)


def test_enrichment_mismatches_are_not_edits():
    online = _pair("ab", enriched=[("old",), ("same",)])
    offline = _pair("ab", enriched=[("new",), ("same",)])
    got = compare(online, offline, 0.0, 0.0)
    assert got["enrichment_mismatches"] == 1 and got["edit_distance"] == 0 and not got["exact_match"]


def test_longer_online_sequence():
    got = compare(_pair("abcd"), _pair("bd"), 0.0, 0.0)
    assert (got["length_diff"], got["deletes"], got["inserts"], got["online_only"]) == (2, 2, 0, 2)


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


def test_injected_faults_are_counted_exactly(retail, tmp_path):
    store, data, customers, purchases, items = retail
    start = pd.Timestamp.now(tz="UTC").to_pydatetime()
    lost, late, stale = customers[0], customers[1], customers[2]
    ordinary = purchases[purchases["customer_id"] == lost].iloc[0]
    later = pd.Timestamp("2011-01-01", tz="UTC")

    # 1. Three purchases reach the online store only: the batch source never gets them.
    online_only = pd.DataFrame(
        {
            "customer_id": [lost] * 3,
            "invoice": [f"T{k}" for k in range(3)],
            "item_id": [ordinary["item_id"]] * 3,
            "quantity": pd.Series([1, 2, 3], dtype="int32"),
            "unit_price": pd.Series([1.0] * 3, dtype="float32"),
            "event_timestamp": pd.DatetimeIndex([later + pd.Timedelta(minutes=k) for k in range(3)]).as_unit("us"),
        }
    )
    store.push("purchase_push", online_only, to=PushMode.ONLINE)
    # 2. Two purchases land in the batch source and are never pushed.
    batch_only = online_only.iloc[:2].assign(customer_id=late, invoice=["B0", "B1"])
    retail_logged_repo.write_parquet(data / "purchases" / "part-batch-only.parquet", batch_only)
    # 3. An item of one customer changes its catalogue entry in place, after its purchases were
    #    enriched at index time: what they were indexed with is stale.
    others = set(purchases.loc[purchases["customer_id"].isin([lost, late]), "item_id"]) | {ordinary["item_id"]}
    changed = next(i for i in purchases.loc[purchases["customer_id"] == stale, "item_id"] if i not in others)
    catalogue = items.assign(description=items["description"].where(items["item_id"] != changed, "CHANGED"))
    (data / "items" / "part-0.parquet").unlink()
    retail_logged_repo.write_parquet(data / "items" / "part-1.parquet", catalogue)
    stale_events = purchases[purchases["item_id"] == changed].drop_duplicates(["customer_id", "invoice", "item_id"])
    affected = {lost, late} | set(stale_events["customer_id"])

    _serve_all(store, customers)
    # 4. The ranking use case is changed by `feast apply` between the log and the check.
    store.apply(retail_logged_repo.objects(data, ranking_length=5))

    out = tmp_path / "report"
    code = main(["consistency", "--repo", str(store.repo_path), "--start", start.isoformat(), "--out", str(out)])
    assert code == 1  # the gate fails: purchase_history is no longer an exact match
    summary = json.loads((out / "summary.json").read_text())
    history = summary["use_cases"]["purchase_history"]
    view = history["views"]["purchases"]
    assert history["configuration_changes"] == 0
    assert view["rows"] == CUSTOMERS
    assert view["online_only_events"] == 3 and view["deletes"] == 3
    assert view["offline_only_events"] == 2 and view["inserts"] == 2
    assert view["enrichment_mismatches"] == len(stale_events) > 0
    assert view["exact_matches"] == CUSTOMERS - len(affected)
    assert view["online_lag_s"]["rows"] == 1 and view["offline_lag_s"]["rows"] == 1
    ranking = summary["use_cases"]["purchase_ranking"]
    assert ranking["configuration_changes"] == CUSTOMERS and ranking["views"] == {}  # not skew
    assert summary["validation"]["success"] is False
    page = (out / "report.html").read_text()
    assert "<svg" in page and "purchase_history" in page and "Configuration changes" in page


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
