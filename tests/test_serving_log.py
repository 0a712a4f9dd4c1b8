"""Serving logs: a logged use case's responses reach its file destination, from the Python, async and
`feast serve` paths; a slow or failing destination drops and counts rows, never fails a request."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore
from feast.data_source import PushMode
from prometheus_client import REGISTRY

from feast_sequence import get_training_data
from feast_sequence.monitoring.training_from_logs import training_frame_from_logs
from feast_sequence.serving import serving_log
from feast_sequence.serving.log_files import read_file_logs
from feast_sequence.transformations.consistency_job import run_consistency

import logged_repo
import serving_repo
from feast_server import feast_serve, module_repo, post
from repos import sequence_online, wait_until

NOW = pd.Timestamp.now(tz="UTC")
USERS = [0, 1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def logged_store(tmp_path_factory, redis_server):
    """One repository for the module (each test reads only the log rows it adds)."""
    redis_server.client().flushall()
    repo = tmp_path_factory.mktemp("logged") / "repo"
    env = module_repo(repo, "logged_repo", "logged", sequence_online(redis_server.connection_string))
    store = FeatureStore(repo_path=str(repo))
    store.push("items_push", serving_repo.item_rows(30, NOW - pd.Timedelta(days=90)), to=PushMode.ONLINE_AND_OFFLINE)
    clicks = serving_repo.clicks(300, len(USERS), NOW, seed=4)
    # None within an hour of the 30-day window's edge: logs and labels a moment apart see the same.
    clicks = clicks[((NOW - clicks["ts"]) - pd.Timedelta(days=30)).abs() > pd.Timedelta(hours=1)].reset_index(drop=True)
    store.push("clicks_push", clicks, to=PushMode.ONLINE_AND_OFFLINE)
    serving_log.configure(flush_interval_s=0.05)
    yield store, repo, env
    serving_log.configure()


def _logs(store: FeatureStore, name: str) -> pd.DataFrame:
    service = store.get_feature_service(name)
    return read_file_logs(store.config, service.logging_config.destination).to_pandas()


def _dropped(use_case: str, reason: str) -> float:
    return (
        REGISTRY.get_sample_value("feast_sequence_log_rows_dropped_total", {"use_case": use_case, "reason": reason})
        or 0.0
    )


def _unpadded(served: dict, row: int, name: str) -> list:
    return [v for v, kept in zip(served[name][row], served["clicks__mask"][row]) if kept]


def test_python_async_and_http_requests_are_logged(logged_store):
    store, repo, env = logged_store
    service = store.get_feature_service("ranking_logged")
    rows = [{"user_id": u} for u in USERS]
    served = store.get_online_features(features=service, entity_rows=rows).to_dict()
    asyncio.run(store.get_online_features_async(features=service, entity_rows=rows[:2]))
    store.get_online_features(features=store.get_feature_service("ranking_unsampled"), entity_rows=rows)
    assert serving_log.flush()
    logs = _logs(store, "ranking_logged").sort_values([serving_log.LOG_TIMESTAMP, "user_id"], kind="stable")
    assert len(logs) == len(USERS) + 2  # the first test of the module: the only rows
    assert _logs(store, "ranking_unsampled").empty  # sample_rate=0: nothing
    first = logs[logs[serving_log.REQUEST_ID] == logs[serving_log.REQUEST_ID].iloc[0]].reset_index(drop=True)
    assert first["user_id"].tolist() == USERS
    assert set(logs[serving_log.USE_CASE_VERSION_FIELD]) == {serving_log.use_case_version(service)}
    for row in range(len(USERS)):
        for name in ("item_id", "kind", "n", "title", "cost"):
            assert list(first[f"clicks__{name}"][row]) == _unpadded(served, row, name), (row, name)
        times = [pd.Timestamp(t, tz="UTC").to_pydatetime() for t in first["clicks__ts"][row]]
        assert times == _unpadded(served, row, "ts")
    assert any(len(v) for v in first["clicks__item_id"])
    request_time = first[serving_log.LOG_TIMESTAMP].iloc[0]
    assert abs(request_time - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=5)

    # `feast serve`: each worker logs from its own flusher thread, to the same destination.
    with feast_serve(repo, env=env) as port:
        post(port, "/get-online-features", {"feature_service": "ranking_logged", "entities": {"user_id": [3, 4]}})
        wait_until(lambda: len(_logs(store, "ranking_logged")) == len(USERS) + 4, 60, "the server's log rows")
    http = _logs(store, "ranking_logged").sort_values(serving_log.LOG_TIMESTAMP).tail(2)
    assert sorted(http["user_id"]) == [3, 4]
    assert [list(v) for v in http.sort_values("user_id")["clicks__item_id"]] == [
        _unpadded(served, 3, "item_id"),
        _unpadded(served, 4, "item_id"),
    ]


def test_requests_are_sampled_at_the_configured_rate(logged_store):
    store, _, _ = logged_store
    service = store.get_feature_service("ranking_half")
    before = _written("ranking_half")
    for _ in range(400):
        store.get_online_features(features=service, entity_rows=[{"user_id": 1}, {"user_id": 2}])
    assert serving_log.flush()
    logged = _logs(store, "ranking_half")
    requests = logged[serving_log.REQUEST_ID].nunique()
    assert 120 <= requests <= 280  # 200 expected; 8 standard deviations either side
    assert len(logged) == 2 * requests == _written("ranking_half") - before


def _written(use_case: str) -> float:
    return REGISTRY.get_sample_value("feast_sequence_log_rows_written_total", {"use_case": use_case}) or 0.0


def test_a_failing_destination_drops_and_counts(logged_store):
    store, repo, _ = logged_store
    service = store.get_feature_service("ranking_logged")
    destination = logged_repo.log_dir(repo / "data", "ranking_logged")
    destination.parent.mkdir(parents=True, exist_ok=True)
    moved = destination.rename(destination.with_name("kept"))
    destination.write_text("a file where the log folder should be")
    before = _dropped("ranking_logged", "write_failed")
    rows = [{"user_id": u} for u in USERS]
    out = store.get_online_features(features=service, entity_rows=rows).to_dict()
    assert len(out["item_id"]) == len(USERS)  # the request itself is served
    assert serving_log.flush()
    destination.unlink()
    moved.rename(destination)
    assert _dropped("ranking_logged", "write_failed") - before == len(USERS)
    assert isinstance(serving_log.default_logger().last_error, OSError)


class _StalledLogger(serving_log.ServingLogger):
    """A destination that does not answer until released: the queue fills behind it."""

    def __init__(self, release: threading.Event, **options):
        super().__init__(**options)
        self.release = release

    def write(self, requests):
        self.release.wait(30)
        super().write(requests)


def test_a_full_queue_drops_and_counts_without_waiting(logged_store, monkeypatch):
    store, _, _ = logged_store
    release = threading.Event()
    stalled = _StalledLogger(release, max_queued=2, flush_interval_s=0.01)
    monkeypatch.setattr(serving_log, "_default", stalled)
    service = store.get_feature_service("ranking_logged")
    before = _dropped("ranking_logged", "queue_full")
    logged_before = len(_logs(store, "ranking_logged"))
    for _ in range(10):  # the flusher holds one batch, the queue two requests: the rest are dropped
        store.get_online_features(features=service, entity_rows=[{"user_id": 1}, {"user_id": 2}])
    dropped = _dropped("ranking_logged", "queue_full") - before
    release.set()
    assert stalled.flush()
    written = len(_logs(store, "ranking_logged")) - logged_before
    assert dropped >= 2 and written + dropped == 20


def test_training_frame_from_logs_equals_get_training_data(logged_store):
    store, _, _ = logged_store
    service = store.get_feature_service("ranking_logged")
    store.get_online_features(features=service, entity_rows=[{"user_id": u} for u in USERS])
    assert serving_log.flush()
    after = pd.Timestamp.now(tz="UTC")
    labels = pd.DataFrame(
        {
            "user_id": USERS + [99],  # 99 was never served: no training row
            "event_timestamp": [after] * len(USERS) + [after],
            "clicked": [u % 2 == 0 for u in USERS] + [True],
        }
    )
    from_logs = training_frame_from_logs(store, "ranking_logged", labels)
    want = get_training_data(store, labels[labels["user_id"] != 99], service).to_df()
    assert list(from_logs.columns) == list(want.columns)
    assert from_logs.dtypes.to_dict() == want.dtypes.to_dict()
    assert from_logs["user_id"].tolist() == USERS
    for column in want.columns:
        got = [_comparable(v) for v in from_logs[column]]
        assert got == [_comparable(v) for v in want[column]], column
    assert any(any(m) for m in from_logs["clicks__mask"])
    # Labels before any logged response have nothing to train on.
    early = labels.assign(event_timestamp=NOW - pd.Timedelta(days=1))
    assert training_frame_from_logs(store, "ranking_logged", early).empty


def _comparable(value):
    if isinstance(value, (list, np.ndarray)):
        return [None if v is None or v is pd.NaT else v for v in list(value)]
    return value


def test_consistency_of_what_was_logged_is_exact(logged_store, tmp_path):
    """Nothing injected: every logged response equals the offline engine's at its request time
    (file offline store, pandas engine)."""
    store, _, _ = logged_store
    service = store.get_feature_service("ranking_logged")
    store.get_online_features(features=service, entity_rows=[{"user_id": u} for u in USERS])
    assert serving_log.flush()
    run = run_consistency(store, tmp_path / "report", use_cases=["ranking_logged"])
    stats = run.summary["use_cases"]["ranking_logged"]
    assert stats["configuration_changes"] == 0
    assert stats["views"]["clicks"]["rows"] == len(_logs(store, "ranking_logged"))
    assert stats["views"]["clicks"]["exact_match_rate"] == 1.0, stats
    assert run.passed and (tmp_path / "report" / "report.html").exists()
