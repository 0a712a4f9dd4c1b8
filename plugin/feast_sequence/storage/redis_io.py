"""Running planned Redis commands, sync or async, in one pipeline: the only I/O of the store.

Commands are planned by pure code as tuples for ``execute_command``. Scripts run by SHA; when the
server does not know a script (first use, restart, failover) we load it and run the pipeline again,
which is safe because every planned command is idempotent (appends absorb duplicates, reads are pure).
A write pipeline can end with ``WAIT`` (:class:`ReplicaAcks`); too few replica acknowledgements
count as a retriable failure, and the whole pipeline is sent again.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Generator, Iterable, List, Optional, Sequence, Tuple, Union

from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    ConnectionError,
    NoScriptError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from feast_sequence.errors import SequenceStoreError, SequenceStoreUnavailableError
from feast_sequence.storage.drivers import drive, drive_async
from feast_sequence.storage.scripts import (
    APPEND,
    COMPACT,
    ERASE,
    EXPIRE,
    MULTI_HMGET,
    READ,
    REWRITE,
    SNAPSHOT,
    VERIFY,
    LuaScript,
)

Command = Tuple[Any, ...]

_SCRIPTS = {s.sha: s for s in (APPEND, ERASE, EXPIRE, REWRITE, MULTI_HMGET, READ, SNAPSHOT, COMPACT, VERIFY)}


def evalsha(script: LuaScript, keys: Sequence[bytes], args: Iterable[Any]) -> Command:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def _is_noscript(exc: BaseException) -> bool:
    return isinstance(exc, NoScriptError) or (isinstance(exc, ResponseError) and str(exc).startswith("NOSCRIPT"))


def _is_noreplicas(exc: BaseException) -> bool:
    """The master's ``min-replicas-to-write`` refused a write: nothing of it was applied (Redis
    refuses every write command while too few replicas are connected, so a script stops at its
    first write)."""
    return isinstance(exc, ResponseError) and "NOREPLICAS" in str(exc)


def _scripts_in(commands: Sequence[Command]) -> List[LuaScript]:
    shas = {c[1] for c in commands if c[0] == "EVALSHA"}
    return [_SCRIPTS[sha] for sha in shas]


class Access(enum.Enum):
    """Whether a pipeline writes: what an outage may have left behind depends on it."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class RetryPolicy:
    """How often a pipeline that could not reach Redis is sent again, with doubling, jittered waits."""

    retries: int = 0
    backoff_seconds: float = 0.05
    max_backoff_seconds: float = 2.0

    def backoff(self, attempt: int) -> float:
        """The longest wait before retry ``attempt`` (from 0): doubling, at most ``max_backoff_seconds``."""
        # int ** int is Any to mypy (a negative exponent gives a float); attempt is never negative.
        delay: float = min(self.backoff_seconds * (2**attempt), self.max_backoff_seconds)
        return delay

    def wait(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        """The wait before retry ``attempt``: half its backoff plus a random share of the other half
        (redis-py's ``EqualJitterBackoff``). Workers cut off by one failover then retry spread out,
        not in lockstep against the new master, and each still waits at least half the backoff."""
        delay = self.backoff(attempt)
        return delay / 2 + draw() * delay / 2


NO_RETRY = RetryPolicy()


def retry_policy(online_config: Any) -> RetryPolicy:
    """The policy set by ``retries`` and ``retry_backoff_seconds`` of the online store config."""
    return RetryPolicy(
        retries=getattr(online_config, "retries", 0),
        backoff_seconds=getattr(online_config, "retry_backoff_seconds", NO_RETRY.backoff_seconds),
    )


@dataclass(frozen=True)
class ReplicaAcks:
    """How many replicas must confirm a write pipeline (Redis ``WAIT``) before it counts as written.

    ``WAIT`` counts the replicas that have processed every write sent *on its connection*, so it is
    planned as the last command of the write pipeline itself, never sent separately.
    """

    replicas: int = 0
    timeout_ms: int = 1000

    def planned(self, commands: Sequence[Command]) -> List[Command]:
        """``commands``, followed by ``WAIT`` when acknowledgements are required."""
        if not self.replicas or not commands:
            return list(commands)
        return [*commands, ("WAIT", self.replicas, self.timeout_ms)]

    def checked(self, replies: List[Any]) -> List[Any]:
        """The replies of the planned commands without the ``WAIT``; too few acknowledgements raise."""
        if not self.replicas or not replies:
            return replies
        acknowledged = int(replies[-1])
        if acknowledged < self.replicas:
            raise _TooFewReplicas(acknowledged, self)
        return replies[:-1]


NO_ACKS = ReplicaAcks()


def replica_acks(online_config: Any) -> ReplicaAcks:
    """The acknowledgements set by ``min_replica_acks`` and ``replica_ack_timeout_ms``."""
    return ReplicaAcks(
        replicas=getattr(online_config, "min_replica_acks", 0),
        timeout_ms=getattr(online_config, "replica_ack_timeout_ms", NO_ACKS.timeout_ms),
    )


class _TooFewReplicas(Exception):
    """``WAIT`` returned fewer acknowledgements than required (not a Redis error: the write applied)."""

    def __init__(self, acknowledged: int, acks: ReplicaAcks):
        super().__init__(f"{acknowledged} of {acks.replicas} replica(s) acknowledged")
        self.acknowledged, self.acks = acknowledged, acks


_Failure = Union[RedisError, _TooFewReplicas]


class _Outcome:
    """What to do after a failed attempt."""

    LOAD_SCRIPTS, RETRY = "load", "retry"


def _decide(exc: _Failure, attempt: int, scripts_loaded: bool, retry: RetryPolicy, what: str, access: Access) -> str:
    if isinstance(exc, (AuthenticationError, AuthenticationWrongNumberOfArgsError)):
        raise SequenceStoreError(
            f"Redis rejected the credentials while {what}: {exc}. Check password= (and username=) "
            "in the online store's connection_string."
        ) from exc
    if _is_noscript(exc) and not scripts_loaded:
        return _Outcome.LOAD_SCRIPTS  # first use, or Redis restarted and forgot its scripts
    if isinstance(exc, OutOfMemoryError) or (isinstance(exc, ResponseError) and "> 'maxmemory'" in str(exc)):
        raise SequenceStoreError(
            f"Redis is out of memory (maxmemory reached) while {what}: {exc}. Each entity's events "
            "are written whole or not at all (one atomic script call per entity and up to 1,000 "
            "events), so some entities of this batch may have been written and the others not. It "
            "is safe to re-send the whole batch once memory is freed or maxmemory raised (writes "
            "are idempotent)."
        ) from exc
    unavailable = _unavailable(exc, f"while {what} ({attempt + 1} attempt(s))", access)
    if unavailable is None:
        raise SequenceStoreError(f"Redis failed while {what}: {exc}") from exc
    if attempt < retry.retries:
        return _Outcome.RETRY  # the whole pipeline: after a failover the master may lack the writes
    raise SequenceStoreUnavailableError(unavailable) from exc


def _unavailable(exc: _Failure, when: str, access: Access) -> Optional[str]:
    """What went wrong, if the failure is retriable (and retrying can help); None otherwise."""
    if isinstance(exc, _TooFewReplicas):
        return (
            f"Only {exc.acknowledged} of the {exc.acks.replicas} replica(s) required by min_replica_acks "
            f"acknowledged within replica_ack_timeout_ms={exc.acks.timeout_ms} {when}. The master "
            "applied the write, but a failover now could lose it: resend it (writes are idempotent), "
            "and check that the replicas are connected (INFO replication)."
        )
    if _is_noreplicas(exc):
        return (
            f"Redis refused the write {when}: fewer replicas are connected than its "
            f"min-replicas-to-write setting asks for ({exc}). The refused calls wrote nothing; resend "
            "the write once the replicas are back (writes are idempotent)."
        )
    if isinstance(exc, (ConnectionError, TimeoutError)):
        if access is Access.READ:
            return f"Redis could not be reached {when}: {exc}. Nothing was changed; it is safe to retry."
        # The pipeline may be cut anywhere between its script calls: the calls Redis ran before
        # the cut stay applied, each one whole.
        return (
            f"Redis could not be reached {when}: {exc}. The write may be partly applied: some "
            "entities' events may have been written. Each script call (one entity, at most 1,000 of "
            "its events per append) was applied whole or not at all. It is safe to retry: re-sending "
            "the whole batch is safe because writes are idempotent."
        )
    return None


@dataclass(frozen=True)
class _RunPipeline:
    """Send ``commands`` in one non-transactional pipeline; the step's reply is their replies."""

    commands: Sequence[Command]


@dataclass(frozen=True)
class _LoadScripts:
    """``SCRIPT LOAD`` each of ``scripts``."""

    scripts: Sequence[LuaScript]


@dataclass(frozen=True)
class _Wait:
    seconds: float


_Step = Union[_RunPipeline, _LoadScripts, _Wait]


def _attempts(
    commands: Sequence[Command], what: str, retry: RetryPolicy, acks: ReplicaAcks, access: Access
) -> Generator[_Step, Any, List[Any]]:
    """The retry and script-loading state machine of one pipeline, without I/O: it yields the steps
    to take and receives their replies, or their Redis errors thrown in (storage/drivers.py)."""
    planned = acks.planned(commands)
    attempt, scripts_loaded = 0, False
    while True:
        try:
            return acks.checked((yield _RunPipeline(planned)))
        except (RedisError, _TooFewReplicas) as exc:
            if _decide(exc, attempt, scripts_loaded, retry, what, access) == _Outcome.LOAD_SCRIPTS:
                try:
                    yield _LoadScripts(_scripts_in(commands))
                    scripts_loaded = True
                    continue
                except RedisError as load_exc:
                    # A load fails for the reasons a pipeline does (mostly a failover): it waits
                    # like any retry, or the whole budget is gone in microseconds.
                    _decide(load_exc, attempt, True, retry, what, access)
        yield _Wait(retry.wait(attempt))
        attempt, scripts_loaded = attempt + 1, False  # a retry may reach a new master after a failover


def execute(
    client: Any,
    commands: Sequence[Command],
    what: str,
    retry: RetryPolicy = NO_RETRY,
    acks: ReplicaAcks = NO_ACKS,
    access: Access = Access.READ,
) -> List[Any]:
    """Run ``commands`` in one non-transactional pipeline and return their replies in order.

    A pipeline that fails is sent again whole (idempotent commands only): after loading scripts
    Redis did not know, and up to ``retry.retries`` times when Redis could not be reached or fewer
    replicas than ``acks`` asks for acknowledged the writes. ``access`` says whether the commands
    write, so that an outage's error says truthfully what may have been applied.
    """
    return run_round_trip(client, RoundTrip(commands, what, retry, acks, access))


@dataclass(frozen=True)
class RoundTrip:
    """One pipeline of planned commands and how to run it: what every store operation yields."""

    commands: Sequence[Command]
    what: str  # for error messages: "while <what>"
    retry: RetryPolicy = NO_RETRY
    acks: ReplicaAcks = NO_ACKS
    access: Access = Access.READ

    def attempts(self) -> Generator[_Step, Any, List[Any]]:
        """This round trip's attempts, as the drivers run them (none without commands)."""
        if not self.commands:
            return []
        return (yield from _attempts(self.commands, self.what, self.retry, self.acks, self.access))


def run_round_trip(client: Any, trip: RoundTrip) -> List[Any]:
    """:func:`execute` of a round trip, with a synchronous client."""
    return drive(trip.attempts(), partial(_take, client))


async def run_round_trip_async(client: Any, trip: RoundTrip) -> List[Any]:
    """:func:`execute` of a round trip, with a ``redis.asyncio`` client."""
    return await drive_async(trip.attempts(), partial(_take_async, client))


def _take(client: Any, step: _Step) -> Any:
    if isinstance(step, _Wait):
        time.sleep(step.seconds)
        return None
    if isinstance(step, _LoadScripts):
        return [client.script_load(script.source) for script in step.scripts]
    with client.pipeline(transaction=False) as pipe:
        for command in step.commands:
            pipe.execute_command(*command)
        return pipe.execute()


async def _take_async(client: Any, step: _Step) -> Any:
    if isinstance(step, _Wait):
        await asyncio.sleep(step.seconds)
        return None
    if isinstance(step, _LoadScripts):
        return [await client.script_load(script.source) for script in step.scripts]
    async with client.pipeline(transaction=False) as pipe:
        for command in step.commands:
            pipe.execute_command(*command)
        return await pipe.execute()
