"""`feast serve` with use cases: served over HTTP, limits enforced, `feast apply` picked up live."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from feast import FeatureStore

import serving_repo
from conftest import feature_store_yaml
from feast_sequence import SequenceSpec, SequenceUseCase
from feast_sequence.local_redis import free_port
from test_feature_server import post

TESTS = Path(__file__).resolve().parent
REPO_MODULE = f"""
import sys
from pathlib import Path

sys.path.insert(0, {str(TESTS)!r})
import serving_repo

for _object in serving_repo.objects(Path(__file__).resolve().parent / "data"):
    globals()[_object.name] = _object
"""


@pytest.fixture
def served_over_http(tmp_path: Path, redis_server, redis_client):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "features.py").write_text(REPO_MODULE)
    (repo / "feature_store.yaml").write_text(
        feature_store_yaml("http_serving", redis_server.connection_string)
    )
    feast = str(Path(sys.executable).parent / "feast")
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    applied = subprocess.run([feast, "-c", str(repo), "apply"], capture_output=True, text=True, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    store = FeatureStore(repo_path=str(repo))
    now = pd.Timestamp.now(tz="UTC")
    store.push("items_push", serving_repo.item_rows(30, now - pd.Timedelta(days=90)))
    store.push("clicks_push", serving_repo.clicks(300, 6, now, seed=4))
    port = free_port()
    process = subprocess.Popen(
        [
            feast,
            "-c",
            str(repo),
            "serve",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--no-access-log",
            "--registry_ttl_sec",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("feast serve did not start: " + process.stderr.read().decode()[-3000:])
            time.sleep(0.3)
    yield store, port
    process.terminate()
    process.wait(30)


def _values(body: dict) -> dict:
    return {n: r["values"] for n, r in zip(body["metadata"]["feature_names"], body["results"])}


def test_feast_serve_serves_use_cases_and_picks_up_apply(served_over_http):
    store, port = served_over_http
    rows = [{"user_id": u} for u in range(3)]
    body = post(
        port, "/get-online-features", {"feature_service": "ranking", "entities": {"user_id": [0, 1, 2]}}
    )
    expected = store.get_online_features(
        features=store.get_feature_service("ranking"), entity_rows=rows
    ).to_dict()
    served = _values(body)
    for name in ("item_id", "title", "n", "clicks__mask", "clicks_seen"):
        assert served[name] == expected[name], name

    # A request over the use case's max_entities fails with the use case's own message.
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(
            port, "/get-online-features", {"feature_service": "recent", "entities": {"user_id": [0, 1, 2, 3]}}
        )
    assert "max_entities=3" in refused.value.read().decode()

    # `feast apply` of a changed use case reaches the running server at its next registry refresh.
    clicks = store.get_feature_view("clicks")
    store.apply(
        [
            SequenceUseCase(
                name="recent",
                features=[clicks[["item_id"]]],
                sequences={"clicks": SequenceSpec(length=1)},
                output="jagged",
            )
        ]
    )
    deadline = time.monotonic() + 20
    while True:
        body = post(
            port, "/get-online-features", {"feature_service": "recent", "entities": {"user_id": [0, 1, 2]}}
        )
        if max(_values(body)["clicks__length"]) == 1:
            break
        assert time.monotonic() < deadline, "feast serve never picked up the changed use case"
        time.sleep(0.5)
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
