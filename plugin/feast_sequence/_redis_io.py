"""Running planned Redis commands, sync or async, in one pipeline: the only I/O of the store.

Commands are planned by pure code as tuples for ``execute_command``. Scripts run by SHA; when the
server does not know a script (first use, restart, failover) we load it and run the pipeline again,
which is safe because every planned command is idempotent (appends absorb duplicates, reads are pure).
"""

from __future__ import annotations

from typing import Any, Iterable, List, Sequence, Tuple

from redis.exceptions import NoScriptError, RedisError, ResponseError

from feast_sequence._scripts import APPEND, REWRITE, LuaScript
from feast_sequence.errors import SequenceStoreError

Command = Tuple[Any, ...]

_SCRIPTS = {s.sha: s for s in (APPEND, REWRITE)}


def evalsha(script: LuaScript, keys: Sequence[bytes], args: Iterable[Any]) -> Command:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def _is_noscript(exc: BaseException) -> bool:
    return isinstance(exc, NoScriptError) or (
        isinstance(exc, ResponseError) and str(exc).startswith("NOSCRIPT")
    )


def _scripts_in(commands: Sequence[Command]) -> List[LuaScript]:
    shas = {c[1] for c in commands if c[0] == "EVALSHA"}
    return [_SCRIPTS[sha] for sha in shas]


def execute(client: Any, commands: Sequence[Command], what: str) -> List[Any]:
    """Run ``commands`` in one non-transactional pipeline and return their replies in order."""
    if not commands:
        return []
    for attempt in (1, 2):
        try:
            with client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return pipe.execute()
        except RedisError as exc:
            if attempt == 1 and _is_noscript(exc):
                for script in _scripts_in(commands):
                    client.script_load(script.source)
                continue
            raise SequenceStoreError(f"Redis failed while {what}: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def execute_async(client: Any, commands: Sequence[Command], what: str) -> List[Any]:
    """Async twin of :func:`execute`."""
    if not commands:
        return []
    for attempt in (1, 2):
        try:
            async with client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return await pipe.execute()
        except RedisError as exc:
            if attempt == 1 and _is_noscript(exc):
                for script in _scripts_in(commands):
                    await client.script_load(script.source)
                continue
            raise SequenceStoreError(f"Redis failed while {what}: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover
