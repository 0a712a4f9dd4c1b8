"""Errors a client can act on: HTTP statuses from `feast serve`, truthful outage messages, and default
timeouts that stop a silent Redis from blocking a push. Real redis-servers and real sockets only."""

from __future__ import annotations

import contextlib
import json
import pickle
import socket
import threading
import time
import urllib.error
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pandas as pd
import pytest
from feast import FeatureStore
from feast.repo_config import FeastConfigError, load_repo_config
from redis.connection import Connection

from feast_sequence import (
    Limits,
    SequenceInputError,
    SequenceRequestError,
    SequenceSpec,
    SequenceStoreUnavailableError,
    SequenceUseCase,
)
from feast_sequence.testing.local_redis import LocalRedis

from conftest import store_on
from feast_server import feast_serve, module_repo, post
from repos import reopened, sequence_online, wait_until, write_repo

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
TIMEOUTS = "socket_timeout=1,socket_connect_timeout=0.5"


def refused(port: int, path: str, body: Dict[str, Any]) -> Tuple[int, str]:
    """The HTTP status and the error message of a request `feast serve` refuses."""
    with pytest.raises(urllib.error.HTTPError) as error:
        post(port, path, body)
    text: str = json.loads(error.value.read().decode())
    # Feast's handler sends a FeastError's to_error_detail(), a JSON document, as a JSON string;
    # any other exception as its text.
    message = json.loads(text)["message"] if text.startswith("{") else text
    return error.value.code, message


def click_rows(users: List[int], n: List[Any]) -> Dict[str, List[Any]]:
    return {
        "user_id": users,
        "item_id": [f"i{u}" for u in users],
        "kind": ["buy"] * len(users),
        "n": n,
        "ts": ["2024-01-01T10:00:00+00:00"] * len(users),
    }


def test_feast_serve_maps_errors_to_http_statuses(tmp_path: Path) -> None:
    with LocalRedis() as server:  # private: the test stops it
        repo = tmp_path / "repo"
        env = module_repo(
            repo,
            "serving_repo",
            "http_errors",
            sequence_online(f"{server.connection_string},{TIMEOUTS}", max_entities_per_request=5),
        )
        store = FeatureStore(repo_path=str(repo))
        hurried = SequenceUseCase(
            name="hurried",
            features=[store.get_feature_view("clicks")[["item_id"]]],
            sequences={"clicks": SequenceSpec(length=1)},
            limits=Limits(time_budget_ms=1e-6),  # exceeded after the first stage, every time
        )
        store.apply([hurried])
        with feast_serve(repo, env=env) as port:
            push = {"push_source_name": "clicks_push", "to": "online"}
            post(port, "/push", {**push, "df": click_rows([1, 2], [1, 2])})

            status, message = refused(port, "/push", {**push, "df": click_rows([1, 2], [1, "seven"])})
            assert status == 422
            assert "Column 'n', row 1" in message and "'seven' cannot be converted to INT32" in message

            users = {"user_id": [0, 1, 2, 3, 4, 5]}
            status, message = refused(port, "/get-online-features", {"features": ["clicks:item_id"], "entities": users})
            assert status == 413 and "exceeds max_entities_per_request=5" in message

            four = {"user_id": [0, 1, 2, 3]}
            status, message = refused(port, "/get-online-features", {"feature_service": "recent", "entities": four})
            assert status == 413 and "max_entities=3" in message

            status, message = refused(
                port, "/get-online-features", {"feature_service": "hurried", "entities": {"user_id": [1]}}
            )
            assert status == 429 and "exceeded its time budget" in message

            # Issue 22, case 9: requests that are wrong in shape answer 422 naming the problem, not 500.
            malformed = {
                "ragged entity columns": (
                    {"features": ["clicks:item_id"], "entities": {"user_id": [1, 2], "session": [7]}},
                    "Entity columns have different lengths (user_id: 2, session: 1)",
                ),
                "no entity rows": (
                    {"features": ["clicks:item_id"], "entities": {"user_id": []}},
                    "No entity rows: the entity columns ['user_id'] are empty",
                ),
                "no features": ({"features": [], "entities": {"user_id": [1]}}, "No features requested"),
                "an unknown feature of a known view": (
                    {"features": ["clicks:nope"], "entities": {"user_id": [1]}},
                    "Feature view 'clicks' has no feature 'nope'",
                ),
            }
            for name, (request, expected) in malformed.items():
                status, message = refused(port, "/get-online-features", request)
                assert (status, expected in message) == (422, True), (name, status, message)

            server.kill()
            status, message = refused(port, "/push", {**push, "df": click_rows([1], [3])})
            assert status == 503 and "could not be reached" in message
            for read in ({"features": ["clicks:item_id"]}, {"feature_service": "recent"}):
                status, message = refused(port, "/get-online-features", {**read, "entities": {"user_id": [1]}})
                assert status == 503 and "could not be reached" in message, read


def test_errors_are_feast_errors_with_their_status() -> None:
    """Feast's servers map any FeastError to its status; messages and except clauses still work."""
    from feast.errors import FeastError

    error = SequenceInputError("Column 'n', row 1: 'seven' cannot be converted to INT32.")
    assert isinstance(error, FeastError) and isinstance(error, ValueError)
    assert str(error) == "Column 'n', row 1: 'seven' cannot be converted to INT32."
    assert json.loads(error.to_error_detail())["message"] == str(error)
    assert SequenceStoreUnavailableError("down").http_status_code() == 503
    assert SequenceRequestError("too many").http_status_code() == 413
    budget = SequenceRequestError("too slow", http_status=429)
    assert budget.http_status_code() == 429
    assert pickle.loads(pickle.dumps(budget)).http_status_code() == 429


# --- an outage mid-push: the message says what may have been written --------------------------------


def many_users(users: int, ts: datetime = T0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": range(users),
            "item": "i",
            "n": pd.Series([1] * users, dtype="int32"),
            "price": 1.0,
            "flag": True,
            "ts": ts,
        }
    )


@contextlib.contextmanager
def frozen_half_way(server: LocalRedis) -> Iterator[None]:
    """Cuts the next pipeline sent to ``server`` half-way, deterministically: its first half is sent,
    and once Redis has written from it, Redis is frozen (``LocalRedis.frozen``) until the block ends,
    then the second half is sent. (A thread pausing Redis when the first keys appear raced the
    pipeline, and lost when the machine was loaded and Redis finished first.)"""
    send = Connection.send_packed_command
    control = server.client()
    keys_before = control.dbsize()
    cut: List[bool] = []

    with contextlib.ExitStack() as freeze, pytest.MonkeyPatch.context() as patch:

        def send_cut(connection: Connection, command: Any, check_health: bool = True) -> None:
            if cut or isinstance(command, (str, bytes)) or len(command) < 2:  # not a pipeline of many commands
                return send(connection, command, check_health)
            cut.append(True)
            half = len(command) // 2
            send(connection, command[:half], check_health)
            wait_until(lambda: control.dbsize() > keys_before, 60, "Redis to write from the pipeline's first half")
            freeze.enter_context(server.frozen())
            return send(connection, command[half:], check_health=False)

        patch.setattr(Connection, "send_packed_command", send_cut)
        yield
    assert cut, "no pipeline was sent"


def test_a_push_cut_by_a_timeout_says_some_events_may_be_written(tmp_path: Path) -> None:
    with LocalRedis() as server:
        store = store_on(tmp_path, f"{server.connection_string},socket_timeout=0.5")
        # Events within every view's TTL (clicks_ttl keeps an hour), so that each pipeline writes.
        now = datetime.now(timezone.utc)
        store.push("clicks_push", many_users(1, now))  # the store's scripts loaded: the cut push runs them at once
        written = server.client().dbsize()
        with frozen_half_way(server), pytest.raises(SequenceStoreUnavailableError) as cut:
            store.push("clicks_push", many_users(40_000, now))
        message = str(cut.value)
        assert server.client().dbsize() > written  # the failed push did write some entities
        assert "Nothing was half-written" not in message
        assert "some entities' events may have been written" in message
        assert "re-sending the whole batch is safe" in message

        with server.frozen(), pytest.raises(SequenceStoreUnavailableError) as read_cut:
            store.get_online_features(features=["clicks:item"], entity_rows=[{"user_id": 1}])
        assert "reading" in str(read_cut.value) and "Nothing was changed" in str(read_cut.value)
        assert "may have been written" not in str(read_cut.value)


# --- default timeouts --------------------------------------------------------------------------------


@contextlib.contextmanager
def silent_redis(hold_seconds: float = 20.0) -> Iterator[int]:
    """A TCP server that accepts connections and never answers; yields its port. It closes them after
    ``hold_seconds`` so that a client without timeouts fails the test instead of hanging it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    accepted: List[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        deadline = time.monotonic() + hold_seconds
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                accepted.append(listener.accept()[0])
            except socket.timeout:
                continue
        for connection in accepted:
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        listener.close()


@contextlib.contextmanager
def unreachable_redis(hold_seconds: float = 20.0) -> Iterator[int]:
    """A port whose connection backlog is full, so that connecting hangs (the kernel drops the SYNs);
    yields the port. It is closed after ``hold_seconds``, refusing connections from then on."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    filler = socket.create_connection(("127.0.0.1", port))  # fills the backlog of one
    closer = threading.Timer(hold_seconds, listener.close)
    closer.start()
    try:
        yield port
    finally:
        closer.cancel()
        filler.close()
        listener.close()


@pytest.fixture
def applied(tmp_path: Path, redis_server: LocalRedis, redis_client: Any) -> FeatureStore:
    return store_on(tmp_path, redis_server.connection_string)


def assert_push_unavailable_within(applied: FeatureStore, connection: str, seconds: float) -> None:
    """A push through ``applied``'s repository on ``connection`` fails as unreachable in under ``seconds``."""
    store = reopened(applied, connection_string=connection)
    start = time.monotonic()
    with pytest.raises(SequenceStoreUnavailableError, match="could not be reached"):
        store.push("clicks_push", many_users(3))
    assert time.monotonic() - start < seconds


def test_a_silent_redis_fails_a_push_within_the_default_timeout(applied: FeatureStore) -> None:
    with silent_redis() as port:
        assert_push_unavailable_within(applied, f"127.0.0.1:{port}", 5.0 + 3)
        # A timeout set in the connection string wins over the default.
        assert_push_unavailable_within(applied, f"127.0.0.1:{port},socket_timeout=0.3", 2)


def test_an_unreachable_redis_fails_a_push_within_the_connect_timeout(applied: FeatureStore) -> None:
    with unreachable_redis() as port:
        # socket_connect_timeout_seconds (2 s), not the 5 s socket timeout
        assert_push_unavailable_within(applied, f"127.0.0.1:{port}", 2.0 + 1.5)


def test_default_socket_timeout_bounds_replica_ack_timeout(tmp_path: Path, redis_server) -> None:
    write_repo(
        tmp_path, "p", sequence_online(redis_server.connection_string, min_replica_acks=1, replica_ack_timeout_ms=6000)
    )
    with pytest.raises(FeastConfigError, match=r"replica_ack_timeout_ms=6000 must be shorter than .*5\.0 s"):
        load_repo_config(tmp_path, tmp_path / "feature_store.yaml")
