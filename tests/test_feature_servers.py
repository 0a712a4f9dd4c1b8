"""Several `feast serve` processes pushing and reading the same sequences at once: the same result
as one process (every append is one atomic script in Redis, so servers need no coordination)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest
from feast import FeatureStore

from feast_server import feast_serve, module_repo, post
from repos import sequence_online
from sample_repo import assert_clicks_match_reference, batches


@pytest.fixture
def two_servers(tmp_path: Path, redis_server, redis_client):
    repo = tmp_path / "repo"
    env = module_repo(repo, "sample_repo", "servers", sequence_online(redis_server.connection_string))
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(feast_serve(repo, env=env)) for _ in range(2)]
        yield FeatureStore(repo_path=str(repo)), ports


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
