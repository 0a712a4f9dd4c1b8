"""`feast-sequence serve`: Feast's feature server with the fast /push answers /push as `feast serve`
does (same writes, 422 on bad input), with the rest of Feast's API, with several workers."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path
from typing import Any, Dict

import pytest

import multi_view_repo
from conftest import sequence_key_count
from feast_server import feast_sequence_serve, feast_serve, module_repo, post
from redis_state import clear, everything, stored
from repos import sequence_online, wait_until


def body(small: Any, total: Any = 1, source: str = "events_push", to: str = "online") -> Dict[str, Any]:
    frame = multi_view_repo.frame(small=small, total=total).assign(ts=["2024-03-01T00:00:00+00:00"])
    return {"push_source_name": source, "df": {c: frame[c].tolist() for c in frame.columns}, "to": to}


def status_of(port: int, request: Dict[str, Any]) -> int:
    try:
        post(port, "/push", request)
        return 200
    except urllib.error.HTTPError as error:
        print(error.code, error.read()[:500])  # shown when a test fails
        return error.code


@pytest.fixture
def repo(tmp_path: Path, redis_client, redis_server):
    repo = tmp_path / "repo"
    env = module_repo(repo, "multi_view_repo", "fastpush", sequence_online(redis_server.connection_string))
    return repo, env


def test_its_push_writes_what_feast_serves_push_writes(repo, redis_client):
    path, env = repo
    states = []
    for serve in (feast_serve, feast_sequence_serve):
        clear(redis_client)
        with serve(path, env=env) as port:
            for small in (1, 2):
                assert status_of(port, body(small)) == 200
        states.append(everything(redis_client))
    assert states[1] == states[0]
    assert sequence_key_count(redis_client) == 2


def test_it_answers_bad_input_as_feast_serve_does_and_writes_nothing(repo, redis_client):
    path, env = repo
    bad = {
        "bad only for a sequence view": body(small=2**40),
        "bad only for the regular view": body(small=1, total="many"),
        "unknown push source": body(small=1, source="no_such_push"),
        "an integer key given as 1.0": {**body(small=1), "df": {**body(small=1)["df"], "user_id": [1.0]}},
        "ragged columns": {**body(small=1), "df": {**body(small=1)["df"], "user_id": [1, 2]}},
    }
    answers = []
    for serve in (feast_serve, feast_sequence_serve):
        clear(redis_client)
        with serve(path, env=env) as port:
            answers.append({name: status_of(port, request) for name, request in bad.items()})
            assert stored(redis_client) == 0
    feast_answers, ours = answers
    assert ours["bad only for a sequence view"] == 422
    assert ours["unknown push source"] == 422 == feast_answers["unknown push source"]
    assert ours["bad only for a sequence view"] == feast_answers["bad only for a sequence view"]
    # Issue 22, case 9: reads refuse the key 1.0 for an integer join key, so pushes do too.
    assert ours["an integer key given as 1.0"] == 422 == feast_answers["an integer key given as 1.0"]
    assert ours["ragged columns"] == 422  # feast serve: 500 (pandas' ValueError)


def test_a_rejected_request_is_logged_as_one_warning_line(repo, redis_client, tmp_path):
    path, env = repo
    log = tmp_path / "server.log"
    with feast_sequence_serve(path, env=env, log=log) as port:
        before = log.read_text()
        assert status_of(port, body(small=2**40)) == 422
        # A second rejection, answered after the first request has ended: once its line is in the log,
        # so is everything the server logged about the first (a second traceback would precede it).
        ragged = {**body(small=1), "df": {**body(small=1)["df"], "user_id": [1, 2]}}
        assert status_of(port, ragged) == 422
        marker = "Pushed columns have different lengths"
        wait_until(lambda: marker in log.read_text(), 60, "the second rejection to be logged")
        logged = log.read_text()[len(before) :].split(marker)[0].strip().splitlines()[:-1]
    # Whatever else the server says meanwhile (gunicorn's start-up lines), the rejection is one line.
    about_it = [line for line in logged if any(w in line for w in ("Error", "ERROR", "Traceback", "422"))]
    assert len(about_it) == 1, logged
    logged = about_it
    assert "WARNING" in logged[0] and "POST /push answered 422: SequenceInputError: Column 'small'" in logged[0]


def test_it_serves_feasts_other_endpoints_with_several_workers(repo, redis_client):
    path, env = repo
    with feast_sequence_serve(path, "--workers", "2", env=env) as port:
        for _ in range(8):  # spread over both workers
            assert status_of(port, body(small=1)) == 200
        rows = post(port, "/get-online-features", {"features": ["totals:total"], "entities": {"user_id": [1]}})
    assert json.dumps(rows).count('"PRESENT"') >= 1
    assert sequence_key_count(redis_client) == 2


def test_the_app_is_feasts_with_only_push_replaced(make_store, tmp_path):
    from feast.feature_server import get_app

    from feast_sequence.online.push_server import fast_push_app

    store = make_store(multi_view_repo.objects(tmp_path / "data_files"))
    ours, feasts = fast_push_app(store, 0), get_app(store, 0)
    pushes = [r for r in ours.routes if getattr(r, "path", None) == "/push"]
    assert len(pushes) == 1 and pushes[0].endpoint.__module__ == "feast_sequence.online.push_server"
    assert sorted(getattr(r, "path", "") for r in ours.routes) == sorted(getattr(r, "path", "") for r in feasts.routes)


def test_an_online_and_offline_push_the_offline_store_would_refuse_answers_422_and_writes_nothing(repo, redis_client):
    """Issue 22, case 8, over HTTP: checked for both destinations before either is written."""
    path, env = repo
    clear(redis_client)
    bad = body(small=1, to="online_and_offline")
    bad["df"]["note"] = ["x"]
    with feast_sequence_serve(path, env=env) as port:
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(port, "/push", bad)
        assert refused.value.code == 422
        assert "extra ['note']. Nothing was written, online or offline" in refused.value.read().decode()
        assert stored(redis_client) == 0
        assert status_of(port, body(small=1, to="online_and_offline")) == 200
    assert sequence_key_count(redis_client) == 2
