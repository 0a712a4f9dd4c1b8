"""Several `feast serve` processes pushing and reading the same sequences at once: the same result
as one process (every append is one atomic script in Redis, so servers need no coordination)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from feast import FeatureStore

from conftest import feature_store_yaml
from feast_sequence.local_redis import free_port
from sample_repo import assert_clicks_match_reference
from test_feature_server import post
from test_reliability import batches

TESTS = Path(__file__).resolve().parent
REPO_MODULE = f"""
import sys
from pathlib import Path

sys.path.insert(0, {str(TESTS)!r})
import sample_repo

for _object in sample_repo.objects(Path(__file__).resolve().parent / "data"):
    globals()[_object.name] = _object
"""


def _serve(repo: Path, env: dict) -> tuple:
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "feast"),
            "-c",
            str(repo),
            "serve",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return port, process


def _wait(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("feast serve did not start: " + process.stderr.read().decode()[-3000:])
            time.sleep(0.3)


@pytest.fixture
def two_servers(tmp_path: Path, redis_server, redis_client):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "features.py").write_text(REPO_MODULE)
    (repo / "feature_store.yaml").write_text(feature_store_yaml("servers", redis_server.connection_string))
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    applied = subprocess.run(
        [str(Path(sys.executable).parent / "feast"), "-c", str(repo), "apply"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    servers = [_serve(repo, env) for _ in range(2)]
    for port, process in servers:
        _wait(port, process)
    yield FeatureStore(repo_path=str(repo)), [port for port, _ in servers]
    for _, process in servers:
        process.terminate()
        process.wait(30)


def _body(frame) -> dict:
    df = {c: frame[c].tolist() for c in frame.columns}
    df["ts"] = [t.isoformat() for t in frame["ts"]]
    df["user_id"] = [int(u) for u in df["user_id"]]
    return {"push_source_name": "clicks_push", "df": df, "to": "online"}


def test_two_servers_pushing_and_reading_at_once_equal_one(two_servers):
    store, ports = two_servers
    frames = batches(24, 40, seed=21)
    read_errors = []

    def writer(port: int, chunk) -> None:
        for frame in chunk:
            post(port, "/push", _body(frame))
            body = post(
                port,
                "/get-online-features",
                {"features": ["clicks:item"], "entities": {"user_id": list(range(20))}},
            )
            if len(body["results"][0]["values"]) != 20:
                read_errors.append(body)

    threads = [threading.Thread(target=writer, args=(ports[i % 2], frames[i::4])) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not read_errors
    assert_clicks_match_reference(store, frames, users=20)
    request = {
        "features": ["clicks:item", "clicks:n", "clicks_dedup:item"],
        "entities": {"user_id": list(range(20))},
        "full_feature_names": True,
    }
    # Compared by name: Feast groups a view's requested features in a set, so the column order of a
    # response can differ between processes.
    by_name = [
        {n: r["values"] for n, r in zip(b["metadata"]["feature_names"], b["results"])}
        for b in (post(port, "/get-online-features", request) for port in ports)
    ]
    assert by_name[0] == by_name[1]
