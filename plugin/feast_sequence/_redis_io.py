"""Running planned Redis commands, sync or async, in one pipeline: the only I/O of the store.

Commands are planned by pure code as tuples for ``execute_command``. Scripts run by SHA; when the
server does not know a script (first use, restart, failover) we load it and run the pipeline again,
which is safe because every planned command is idempotent (appends absorb duplicates, reads are pure).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Iterable, List, Sequence, Tuple

from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    ConnectionError,
    NoScriptError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from feast_sequence._scripts import APPEND, MULTI_HMGET, REWRITE, LuaScript
from feast_sequence.errors import SequenceStoreError, SequenceStoreUnavailableError

Command = Tuple[Any, ...]

_SCRIPTS = {s.sha: s for s in (APPEND, REWRITE, MULTI_HMGET)}


def evalsha(script: LuaScript, keys: Sequence[bytes], args: Iterable[Any]) -> Command:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def _is_noscript(exc: BaseException) -> bool:
    return isinstance(exc, NoScriptError) or (
        isinstance(exc, ResponseError) and str(exc).startswith("NOSCRIPT")
    )


def _scripts_in(commands: Sequence[Command]) -> List[LuaScript]:
    shas = {c[1] for c in commands if c[0] == "EVALSHA"}
    return [_SCRIPTS[sha] for sha in shas]


@dataclass(frozen=True)
class RetryPolicy:
    """How often a pipeline that could not reach Redis is sent again, with doubling waits."""

    retries: int = 0
    backoff_seconds: float = 0.05
    max_backoff_seconds: float = 2.0

    def wait(self, attempt: int) -> float:
        return min(self.backoff_seconds * (2**attempt), self.max_backoff_seconds)


NO_RETRY = RetryPolicy()


def retry_policy(online_config: Any) -> RetryPolicy:
    """The policy set by ``retries`` and ``retry_backoff_seconds`` of the online store config."""
    return RetryPolicy(
        retries=getattr(online_config, "retries", 0),
        backoff_seconds=getattr(online_config, "retry_backoff_seconds", NO_RETRY.backoff_seconds),
    )


class _Outcome:
    """What to do after a failed attempt: the decision is shared by the sync and async runners."""

    LOAD_SCRIPTS, RETRY = "load", "retry"


def _decide(exc: RedisError, attempt: int, scripts_loaded: bool, retry: RetryPolicy, what: str) -> str:
    if isinstance(exc, (AuthenticationError, AuthenticationWrongNumberOfArgsError)):
        raise SequenceStoreError(
            f"Redis rejected the credentials while {what}: {exc}. Check password= (and username=) "
            "in the online store's connection_string."
        ) from exc
    if _is_noscript(exc) and not scripts_loaded:
        return _Outcome.LOAD_SCRIPTS  # first use, or Redis restarted and forgot its scripts
    if isinstance(exc, (ConnectionError, TimeoutError)):
        if attempt < retry.retries:
            return _Outcome.RETRY
        raise SequenceStoreUnavailableError(
            f"Redis could not be reached while {what} ({attempt + 1} attempt(s)): {exc}. "
            "Nothing was half-written; it is safe to retry (writes are idempotent)."
        ) from exc
    raise SequenceStoreError(f"Redis failed while {what}: {exc}") from exc


def execute(client: Any, commands: Sequence[Command], what: str, retry: RetryPolicy = NO_RETRY) -> List[Any]:
    """Run ``commands`` in one non-transactional pipeline and return their replies in order.

    A pipeline that fails is sent again whole (idempotent commands only): after loading scripts
    Redis did not know, and up to ``retry.retries`` times when Redis could not be reached.
    """
    if not commands:
        return []
    attempt, scripts_loaded = 0, False
    while True:
        try:
            with client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return pipe.execute()
        except RedisError as exc:
            if _decide(exc, attempt, scripts_loaded, retry, what) == _Outcome.LOAD_SCRIPTS:
                scripts_loaded = True
                try:
                    for script in _scripts_in(commands):
                        client.script_load(script.source)
                except RedisError as load_exc:
                    _decide(load_exc, attempt, True, retry, what)
                    attempt += 1
                continue
            time.sleep(retry.wait(attempt))
            attempt += 1


async def execute_async(
    client: Any, commands: Sequence[Command], what: str, retry: RetryPolicy = NO_RETRY
) -> List[Any]:
    """Async twin of :func:`execute`."""
    if not commands:
        return []
    attempt, scripts_loaded = 0, False
    while True:
        try:
            async with client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return await pipe.execute()
        except RedisError as exc:
            if _decide(exc, attempt, scripts_loaded, retry, what) == _Outcome.LOAD_SCRIPTS:
                scripts_loaded = True
                try:
                    for script in _scripts_in(commands):
                        await client.script_load(script.source)
                except RedisError as load_exc:
                    _decide(load_exc, attempt, True, retry, what)
                    attempt += 1
                continue
            await asyncio.sleep(retry.wait(attempt))
            attempt += 1
