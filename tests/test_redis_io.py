"""Running planned commands: the drivers, and the retry and script-loading state machine (pure)."""

from __future__ import annotations

import asyncio
from typing import List

import pytest
from redis.exceptions import ConnectionError, NoPermissionError, NoScriptError

from feast_sequence import SequenceStoreError, SequenceStoreUnavailableError
from feast_sequence.storage.drivers import Operation, drive, drive_async
from feast_sequence.storage.redis_io import (
    NO_ACKS,
    Access,
    RetryPolicy,
    _attempts,
    _LoadScripts,
    _RunPipeline,
    _Wait,
    evalsha,
)
from feast_sequence.storage.scripts import MULTI_HMGET

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
    assert waits == [0.05, 0.1, 0.2]
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
