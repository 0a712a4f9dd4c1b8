"""Serving logs: a logged use case's responses reach its file destination, from the Python, async and
`feast serve` paths; a slow or failing destination drops and counts rows, never fails a request."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import logged_repo
import pandas as pd
import pytest
from feast import FeatureStore
from prometheus_client import REGISTRY

from feast_sequence.monitoring import serving_log
from feast_sequence.monitoring.log_files import read_file_logs

import serving_repo
from feast_server import feast_serve, module_repo, post
from repos import sequence_online, wait_until

NOW = pd.Timestamp.now(tz="UTC")
USERS = [0, 1, 2, 3, 4, 5]


@pytest.fixture
def logged_store(tmp_path: Path, redis_server, redis_client):
    repo = tmp_path / "repo"
    env = module_repo(repo, "logged_repo", "logged", sequence_online(redis_server.connection_string))
    store = FeatureStore(repo_path=str(repo))
    store.push("items_push", serving_repo.item_rows(30, NOW - pd.Timedelta(days=90)))
    store.push("clicks_push", serving_repo.clicks(300, len(USERS), NOW, seed=4))
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
    assert len(logs) == len(USERS) + 2
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
        wait_until(lambda: len(_logs(store, "ranking_logged")) == len(USERS) + 4, 20, "the server's log rows")
    http = _logs(store, "ranking_logged").sort_values(serving_log.LOG_TIMESTAMP).tail(2)
    assert sorted(http["user_id"]) == [3, 4]
    assert [list(v) for v in http.sort_values("user_id")["clicks__item_id"]] == [
        _unpadded(served, 3, "item_id"),
        _unpadded(served, 4, "item_id"),
    ]


def test_a_failing_destination_drops_and_counts(logged_store):
    store, repo, _ = logged_store
    service = store.get_feature_service("ranking_logged")
    destination = logged_repo.log_dir(repo / "data", "ranking_logged")
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text("a file where the log folder should be")
    before = _dropped("ranking_logged", "write_failed")
    rows = [{"user_id": u} for u in USERS]
    out = store.get_online_features(features=service, entity_rows=rows).to_dict()
    assert len(out["item_id"]) == len(USERS)  # the request itself is served
    assert serving_log.flush()
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
    for _ in range(10):  # the flusher holds one batch, the queue two requests: the rest are dropped
        store.get_online_features(features=service, entity_rows=[{"user_id": 1}, {"user_id": 2}])
    dropped = _dropped("ranking_logged", "queue_full") - before
    release.set()
    assert stalled.flush()
    written = len(_logs(store, "ranking_logged"))
    assert dropped >= 2 and written + dropped == 20
