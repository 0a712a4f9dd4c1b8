"""Running planned commands: the drivers, the retry and script-loading state machine (pure), and a
script load that fails against a real redis-server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, Iterator, List

import pytest
import redis
import redis.asyncio
from redis.exceptions import ConnectionError, NoPermissionError, NoScriptError

from feast_sequence import SequenceStoreError, SequenceStoreUnavailableError
from feast_sequence.storage.client import without_retries
from feast_sequence.storage.drivers import Operation, drive, drive_async
from feast_sequence.storage.redis_io import (
    NO_ACKS,
    Access,
    RetryPolicy,
    RoundTrip,
    _attempts,
    _LoadScripts,
    _RunPipeline,
    _Wait,
    evalsha,
    execute,
    run_round_trip_async,
)
from feast_sequence.storage.scripts import MULTI_HMGET
from feast_sequence.testing.local_redis import LocalRedis, free_port

COMMANDS = [evalsha(MULTI_HMGET, [b"k"], [])]
RETRY = RetryPolicy(retries=3, backoff_seconds=0.05)
NOSCRIPT = NoScriptError("NOSCRIPT No matching script.")
CUT = ConnectionError("Connection closed by server.")


# --- drivers -------------------------------------------------------------------------------------


def _retrying_once() -> Operation[str, List[str]]:
    """Yields a step; when it fails, yields another; returns what it received."""
    try:
        first = yield "first"
    except ValueError as error:
        first = f"failed: {error}"
    second = yield "second"
    return [first, second]


def _run(step: str) -> str:
    if step == "first":
        raise ValueError("boom")
    return f"did {step}"


async def _run_async(step: str) -> str:
    return _run(step)


def test_drivers_throw_errors_into_the_operation_and_return_its_result() -> None:
    assert drive(_retrying_once(), _run) == ["failed: boom", "did second"]
    assert asyncio.run(drive_async(_retrying_once(), _run_async)) == ["failed: boom", "did second"]


def test_drivers_raise_what_the_operation_does_not_catch() -> None:
    def once() -> Operation[str, None]:
        yield "first"

    with pytest.raises(ValueError, match="boom"):
        drive(once(), _run)
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(drive_async(once(), _run_async))


# --- the retry state machine, without Redis -------------------------------------------------------


def test_retries_wait_a_jittered_doubling_backoff() -> None:
    policy = RetryPolicy(retries=8, backoff_seconds=0.1, max_backoff_seconds=1.0)
    assert [policy.backoff(a) for a in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert [policy.wait(a, draw=lambda: 0.0) for a in (0, 4)] == [0.05, 0.5]  # at least half the backoff
    assert [policy.wait(a, draw=lambda: 1.0) for a in (0, 4)] == [0.1, 1.0]  # at most all of it
    waits = {policy.wait(3) for _ in range(50)}  # workers retrying together do not wait alike
    assert len(waits) > 40 and all(0.4 <= w <= 0.8 for w in waits)


def test_a_failed_script_load_waits_like_any_retry() -> None:
    steps = _attempts(COMMANDS, "testing", RETRY, NO_ACKS, Access.READ)
    assert next(steps) == _RunPipeline(COMMANDS)
    for attempt in range(RETRY.retries):
        assert steps.throw(NOSCRIPT) == _LoadScripts([MULTI_HMGET])
        wait = steps.throw(CUT)
        assert isinstance(wait, _Wait) and RETRY.backoff(attempt) / 2 <= wait.seconds <= RETRY.backoff(attempt)
        assert steps.send(None) == _RunPipeline(COMMANDS)
    assert steps.throw(NOSCRIPT) == _LoadScripts([MULTI_HMGET])
    with pytest.raises(SequenceStoreUnavailableError, match=r"while testing \(4 attempt\(s\)\)"):
        steps.throw(CUT)


def test_scripts_are_loaded_once_then_the_pipeline_is_sent_again() -> None:
    steps = _attempts(COMMANDS, "testing", RETRY, NO_ACKS, Access.READ)
    assert next(steps) == _RunPipeline(COMMANDS)
    assert steps.throw(NOSCRIPT) == _LoadScripts([MULTI_HMGET])
    assert steps.send([MULTI_HMGET.sha]) == _RunPipeline(COMMANDS)
    with pytest.raises(SequenceStoreError, match="Redis failed while testing: NOSCRIPT"):
        steps.throw(NOSCRIPT)  # still unknown after a load: not a state a retry can fix


def test_an_unreachable_redis_is_retried_with_doubling_waits_then_reported() -> None:
    steps = _attempts(COMMANDS, "testing", RETRY, NO_ACKS, Access.READ)
    assert next(steps) == _RunPipeline(COMMANDS)
    waits = []
    for _ in range(RETRY.retries):
        wait = steps.throw(CUT)
        assert isinstance(wait, _Wait)
        waits.append(wait.seconds)
        assert steps.send(None) == _RunPipeline(COMMANDS)
    backoffs = [0.05, 0.1, 0.2]  # doubling; each wait between half and all of it (jitter)
    assert all(b / 2 <= w <= b for w, b in zip(waits, backoffs, strict=True)), waits
    with pytest.raises(SequenceStoreUnavailableError, match="Nothing was changed"):
        steps.throw(CUT)


def test_a_script_load_refused_for_good_is_not_retried() -> None:
    steps = _attempts(COMMANDS, "testing", RETRY, NO_ACKS, Access.READ)
    next(steps)
    steps.throw(NOSCRIPT)
    with pytest.raises(SequenceStoreError, match="Redis failed while testing: NOPERM") as raised:
        steps.throw(NoPermissionError("NOPERM this user has no permissions to run the 'script|load' command"))
    assert type(raised.value) is SequenceStoreError


def test_replies_are_returned() -> None:
    steps = _attempts(COMMANDS, "testing", RETRY, NO_ACKS, Access.READ)
    next(steps)
    with pytest.raises(StopIteration) as done:
        steps.send([[b"v"]])
    assert done.value.value == [[b"v"]]


# --- a real failing script load -------------------------------------------------------------------


class _ScriptLoadCutter:
    """A TCP proxy in front of a real redis-server that closes the connection whenever a client sends
    ``SCRIPT``: a script load that fails as in a failover, while every other command reaches Redis."""

    def __init__(self, target_port: int):
        self.port = free_port()
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def cuts(self) -> int:
        return self._cuts

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._target))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if from_client and b"\r\nSCRIPT\r\n" in chunk.upper():
                    self._cuts += 1
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def cutter(redis_server: LocalRedis) -> Iterator[_ScriptLoadCutter]:
    redis_server.client().script_flush()  # the proxy's Redis must not know the script yet
    proxy = _ScriptLoadCutter(redis_server.port)
    yield proxy
    proxy.close()


def _sum_of_waits() -> float:
    """The least the retries wait in all: half of each backoff (the rest is jitter)."""
    return sum(RETRY.backoff(attempt) / 2 for attempt in range(RETRY.retries))


def test_a_failing_script_load_waits_between_retries(cutter: _ScriptLoadCutter) -> None:
    client = redis.Redis(host="127.0.0.1", port=cutter.port, socket_timeout=2)
    without_retries(client)
    started = time.perf_counter()
    with pytest.raises(SequenceStoreUnavailableError, match=r"could not be reached while testing \(4 attempt"):
        execute(client, COMMANDS, "testing", RETRY)
    assert time.perf_counter() - started >= _sum_of_waits()
    assert cutter.cuts == RETRY.retries + 1  # every attempt reached Redis, got NOSCRIPT, and loaded


def test_a_failing_script_load_waits_between_retries_async(cutter: _ScriptLoadCutter) -> None:
    async def run() -> Any:
        client = redis.asyncio.Redis(host="127.0.0.1", port=cutter.port, socket_timeout=2)
        without_retries(client)
        try:
            return await run_round_trip_async(client, RoundTrip(COMMANDS, "testing", RETRY))
        finally:
            await client.aclose()

    started = time.perf_counter()
    with pytest.raises(SequenceStoreUnavailableError, match=r"could not be reached while testing \(4 attempt"):
        asyncio.run(run())
    assert time.perf_counter() - started >= _sum_of_waits()
    assert cutter.cuts == RETRY.retries + 1
