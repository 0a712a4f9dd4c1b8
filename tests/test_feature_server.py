"""`feast serve`: the HTTP /push and /get-online-features endpoints work with sequence views."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from feast_sequence.local_redis import free_port


def post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return json.loads(text) if text else {}


@pytest.fixture
def server(retail_repo: Path, redis_server, redis_client):
    port = free_port()
    env = {**os.environ, "FEAST_SEQUENCE_REDIS": redis_server.connection_string}
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "feast"),
            "-c",
            str(retail_repo),
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
    yield port
    process.terminate()
    process.wait(30)


def test_http_push_then_read(server):
    rows = {
        "customer_id": [42, 42, 42],
        "invoice": ["1", "1", "2"],
        "item_id": ["a", "b", "a"],
        "quantity": [1, 2, 3],
        "unit_price": [1.5, 2.5, 3.5],
        "event_timestamp": ["2010-01-01T10:00:00", "2010-01-01T10:00:00", "2010-01-02T10:00:00"],
    }
    post(server, "/push", {"push_source_name": "purchase_push", "df": rows, "to": "online"})
    body = post(
        server,
        "/get-online-features",
        {
            "features": ["customer_purchases:item_id", "customer_purchases:quantity"],
            "entities": {"customer_id": [42, 7]},
        },
    )
    names = body["metadata"]["feature_names"]
    values = {name: result["values"] for name, result in zip(names, body["results"])}
    assert values["item_id"] == [["a", "b", "a"], []]
    assert values["quantity"] == [[3, 2, 1], []]
