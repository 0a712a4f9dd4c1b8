"""Faults and access: Redis killed and restarted mid-stream, retries, credentials, TLS, and entity
values crafted to look like keys. Each test starts and stops its own redis-server on loopback."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, List

import pandas as pd
import pytest

from feast_sequence import SequenceStoreError, SequenceStoreUnavailableError
from feast_sequence.testing.local_redis import LocalRedis

from conftest import store_on
from repos import push_source, reopened, wait_until
from sample_repo import T0, assert_clicks_match_reference, batches

TIMEOUTS = "socket_timeout=1,socket_connect_timeout=0.5"


def failure_of(call: Callable[..., Any], *args: Any, within_s: float = 5) -> BaseException:
    """The error ``call(*args)`` raises, which it must raise within ``within_s``: it runs on a thread,
    waited for with wait_until, so a hang fails the test instead of blocking it."""
    raised: List[BaseException] = []

    def run() -> None:
        try:
            call(*args)
        except BaseException as error:  # noqa: B036 - handed to the test
            raised.append(error)
        else:
            raised.append(AssertionError(f"{call.__name__} did not fail"))

    threading.Thread(target=run, daemon=True).start()
    wait_until(lambda: bool(raised), within_s, f"{call.__name__} to fail")
    return raised[0]


def assert_equals_reference(store, frames):
    assert_clicks_match_reference(store, frames, users=20)


def test_redis_killed_and_restarted_mid_stream_loses_nothing(tmp_path):
    with LocalRedis(appendonly=True) as server:
        store = store_on(tmp_path, f"{server.connection_string},{TIMEOUTS}")
        frames = batches(90, 40, seed=1)
        failed, read_failures = [], []
        for k, frame in enumerate(frames):
            if k == 30:
                server.kill()  # SIGKILL: a crash, mid-stream
            if k == 60:
                server.start()  # same port and data directory: the append-only file is replayed
            try:
                store.push("clicks_push", frame)
            except SequenceStoreUnavailableError as exc:
                assert "safe to retry" in str(exc)
                failed.append(frame)
            if k == 45:  # a read during the outage fails fast, with a clear error
                read_failures.append(
                    failure_of(store.get_online_features, ["clicks:item"], [{"user_id": 1}], within_s=2)
                )
        assert len(failed) == 30
        assert len(read_failures) == 1 and isinstance(read_failures[0], SequenceStoreUnavailableError)
        assert "could not be reached" in str(read_failures[0])
        for frame in failed:  # at-least-once: the writer re-sends what failed
            store.push("clicks_push", frame)
        assert_equals_reference(store, frames)  # the same client, never restarted


def test_retries_ride_out_a_short_outage(tmp_path):
    with LocalRedis(appendonly=True) as server:
        store = store_on(tmp_path, f"{server.connection_string},{TIMEOUTS}", retries=8, retry_backoff_seconds=0.05)
        frames = batches(4, 50, seed=2)
        store.push("clicks_push", frames[0])
        server.kill()
        restarter = threading.Timer(0.4, server.start)
        restarter.start()
        store.push("clicks_push", frames[1])  # retried with backoff until Redis is back
        restarter.join()
        store.push("clicks_push", frames[2])
        store.push("clicks_push", frames[3])
        assert_equals_reference(store, frames)


def test_password_and_acl_users(tmp_path):
    acl_file = tmp_path / "users.acl"
    acl_file.write_text(
        "user default on >s3cret ~* &* +@all\n"
        "user feast on >writer-pw ~fsq:* &* +@all\n"  # an ACL user limited to our keys
    )
    with LocalRedis(extra_args=["--aclfile", str(acl_file)]) as server:
        good = store_on(tmp_path, f"{server.connection_string},password=s3cret")
        good.push("clicks_push", batches(1, 10, seed=3)[0])
        user = store_on(tmp_path, f"{server.connection_string},username=feast,password=writer-pw")
        user.push("clicks_push", batches(1, 10, seed=4)[0])
        assert user.get_online_features(features=["clicks:item"], entity_rows=[{"user_id": 1}]).to_dict()
        wrong = reopened(good, connection_string=f"{server.connection_string},password=wrong")
        with pytest.raises(SequenceStoreError, match="rejected the credentials"):
            wrong.push("clicks_push", batches(1, 5, seed=5)[0])


def _self_signed(directory: Path) -> Path:
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return directory


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_connection(tmp_path):
    certs = _self_signed(tmp_path)
    from feast_sequence.testing.local_redis import free_port

    tls_port = free_port()
    tls = [
        "--tls-port", str(tls_port), "--tls-cert-file", str(certs / "cert.pem"),
        "--tls-key-file", str(certs / "key.pem"), "--tls-ca-cert-file", str(certs / "cert.pem"),
        "--tls-auth-clients", "no",
    ]  # fmt: skip
    with LocalRedis(extra_args=tls):
        connection = f"127.0.0.1:{tls_port},ssl=true,ssl_ca_certs={certs / 'cert.pem'}"
        store = store_on(tmp_path, connection)
        store.push("clicks_push", batches(1, 10, seed=6)[0])
        out = store.get_online_features(features=["clicks:item"], entity_rows=[{"user_id": u} for u in range(20)])
        assert sum(len(v) for v in out.to_dict()["item"]) > 0


def test_crafted_entity_values_cannot_reach_other_keys(make_store, tmp_path):
    from feast import Entity, Field, ValueType
    from feast.types import String

    from feast_sequence import SequenceFeatureView

    name = Entity(name="name", join_keys=["name"], value_type=ValueType.STRING)
    source = push_source("names", tmp_path, {"name": "string", "v": "string"})
    view = SequenceFeatureView(
        name="names", entities=[name], source=source, schema=[Field(name="v", dtype=String)], max_length=5
    )
    store = make_store([name, view])
    crafted = ["a", "a}", "a}:z", "{a}", "a*", "*", "", "s\x01a", "a\x00b", "}{", "names:{a", "fsq:x"]
    store.push("names_push", pd.DataFrame({"name": crafted, "v": [f"value of {c!r}" for c in crafted], "ts": T0}))
    out = store.get_online_features(
        features=["names:v"], entity_rows=[{"name": c} for c in crafted + ["b", "a}:h"]]
    ).to_dict()
    assert out["v"] == [[f"value of {c!r}"] for c in crafted] + [[], []]


def test_feast_serve_recovers_after_a_redis_restart(tmp_path):
    import urllib.error

    from feast_server import feast_serve, post

    with LocalRedis(appendonly=True) as server:
        store = store_on(tmp_path, f"{server.connection_string},{TIMEOUTS}")
        store.push("clicks_push", batches(1, 20, seed=8)[0])
        request = {"features": ["clicks:item"], "entities": {"user_id": list(range(20))}}
        with feast_serve(Path(store.repo_path)) as port:
            assert len(post(port, "/get-online-features", request)["results"]) == 2
            server.kill()
            # Bounded only against a hang: the request goes through a gunicorn worker, slow on a loaded machine.
            failed = failure_of(post, port, "/get-online-features", request, within_s=60)
            assert isinstance(failed, urllib.error.HTTPError)
            server.start()
            # the same server process, not restarted
            assert len(post(port, "/get-online-features", request)["results"]) == 2


def test_health_check_fails_when_redis_is_unreachable(tmp_path, capsys):
    from feast_sequence.cli import main
    from feast_sequence.online import health

    with LocalRedis() as server:
        store = store_on(tmp_path, f"{server.connection_string},{TIMEOUTS}")
        assert health.check(store) >= 0
        assert main(["health", "--repo", str(store.repo_path)]) == 0
        server.kill()
        with pytest.raises(SequenceStoreUnavailableError):
            health.check(store)
        assert main(["health", "--repo", str(store.repo_path)]) == 1
        assert "unhealthy" in capsys.readouterr().err
