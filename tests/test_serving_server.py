"""`feast serve` with use cases: served over HTTP, limits enforced, `feast apply` picked up live."""

from __future__ import annotations

import time
import urllib.error
from pathlib import Path

import pandas as pd
import pytest
from feast import FeatureStore

import serving_repo
from feast_server import feast_serve, module_repo, post
from repos import sequence_online, wait_until


@pytest.fixture
def served_over_http(tmp_path: Path, redis_server, redis_client):
    repo = tmp_path / "repo"
    env = module_repo(repo, "serving_repo", "http_serving", sequence_online(redis_server.connection_string))
    store = FeatureStore(repo_path=str(repo))
    now = pd.Timestamp.now(tz="UTC")
    store.push("items_push", serving_repo.item_rows(30, now - pd.Timedelta(days=90)))
    store.push("clicks_push", serving_repo.clicks(300, 6, now, seed=4))
    with feast_serve(repo, "--registry_ttl_sec", "1", env=env) as port:
        yield store, port


def _values(body: dict) -> dict:
    return {n: r["values"] for n, r in zip(body["metadata"]["feature_names"], body["results"])}


def test_feast_serve_serves_use_cases_and_picks_up_apply(served_over_http):
    store, port = served_over_http
    rows = [{"user_id": u} for u in range(3)]
    body = post(port, "/get-online-features", {"feature_service": "ranking", "entities": {"user_id": [0, 1, 2]}})
    expected = store.get_online_features(features=store.get_feature_service("ranking"), entity_rows=rows).to_dict()
    served = _values(body)
    for name in ("item_id", "title", "n", "clicks__mask", "clicks_seen"):
        assert served[name] == expected[name], name

    # Order and shape options: oldest first, left-padded, ages (from each request's own time).
    sasrec = {"feature_service": "ranking_sasrec", "entities": {"user_id": [0, 1, 2]}}
    started = time.time()
    over_http = _values(post(port, "/get-online-features", sasrec))
    in_python = store.get_online_features(features=store.get_feature_service("ranking_sasrec"), entity_rows=rows)
    in_python = in_python.to_dict()
    apart = time.time() - started + 1  # whole seconds of age: the two requests' seconds differ by at most this
    for name in ("item_id", "title", "n", "clicks__mask"):
        assert over_http[name] == in_python[name], name
    for http_ages, python_ages, real in zip(over_http["age_s"], in_python["age_s"], in_python["clicks__mask"]):
        assert all(0 <= p - h <= apart for h, p, r in zip(http_ages, python_ages, real) if r)  # served earlier

    # A request over the use case's max_entities fails with the use case's own message.
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(port, "/get-online-features", {"feature_service": "recent", "entities": {"user_id": [0, 1, 2, 3]}})
    assert "max_entities=3" in refused.value.read().decode()

    # `feast apply` of a changed use case reaches the running server at its next registry refresh.
    clicks = store.get_feature_view("clicks")
    store.apply([serving_repo.recent_use_case(clicks, length=1)])
    recent = {"feature_service": "recent", "entities": {"user_id": [0, 1, 2]}}
    wait_until(
        lambda: max(_values(post(port, "/get-online-features", recent))["clicks__length"]) == 1,
        60,
        "feast serve to pick up the changed use case",
        0.5,
    )
    assert (
        _values(
            post(
                port,
                "/get-online-features",
                {"feature_service": "ranking", "entities": {"user_id": [0, 1, 2]}},
            )
        )["clicks__mask"]
        == served["clicks__mask"]
    )
