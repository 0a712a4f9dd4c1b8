"""The Redis client of the sequence store, made as Feast's Redis store makes it (plain, cluster or
sentinel, from ``connection_string``), with redis-py's own retries off, default timeouts, and
Redis's eviction policy checked once. The store and the offline jobs use the same one."""

from __future__ import annotations

import logging
from typing import Any, List, Mapping, Optional, Protocol, runtime_checkable

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from feast_sequence.errors import SequenceConfigurationError, SequenceStoreError
from feast_sequence.feast_internals import feast_redis_client
from feast_sequence.storage.redis_io import execute

_log = logging.getLogger(__name__)


def redis_client(online_config: Any) -> Any:
    """A new synchronous client for the online store's Redis (the offline jobs' way in)."""
    client = feast_redis_client(with_default_timeouts(online_config))
    without_retries(client)
    refuse_eviction(client)
    return client


def without_retries(client: Any) -> None:
    """Our retries (``retries``) resend whole, idempotent pipelines; redis-py's default (3 tries
    with backoff) would stretch a failure to seconds."""
    is_async = type(client).__module__.startswith("redis.asyncio")
    client.set_retry(AsyncRetry(NoBackoff(), 0) if is_async else Retry(NoBackoff(), 0))


@runtime_checkable
class _WithTimeoutDefaults(Protocol):
    """The online store's config (``SequenceRedisOnlineStoreConfig``), which knows its defaults."""

    def connection_string_with_timeouts(self) -> str: ...

    # pydantic's BaseModel.model_copy (every Feast config is a pydantic model).
    def model_copy(self, *, update: Optional[Mapping[str, Any]] = None, deep: bool = False) -> Any: ...


def with_default_timeouts(config: Any) -> Any:
    """``config`` whose connection_string carries the default timeouts: Feast builds every kind of
    client (plain, cluster, sentinel) from the parameters of that string."""
    if not isinstance(config, _WithTimeoutDefaults):
        return config
    return config.model_copy(update={"connection_string": config.connection_string_with_timeouts()})


def refuse_eviction(client: Any) -> None:
    """Sequence views need ``maxmemory-policy noeviction``: evicting one of a sequence's two keys
    serves duplicates or loses events silently, and any eviction drops events without an error.
    See docs/reliability.md, "Eviction"."""
    try:
        policies = eviction_policies(client)
    except SequenceStoreError as exc:
        if type(exc) is not SequenceStoreError or not isinstance(exc.__cause__, ResponseError):
            raise  # unreachable, or the credentials were refused: the call needing the client fails too
        # CONFIG renamed or denied (managed Redis, ACLs): the policy cannot be checked from here.
        _log.warning(
            "Could not read Redis's maxmemory-policy (%s); sequence views need 'noeviction', "
            "check it with your provider.",
            exc.__cause__,
        )
        return
    evicting = sorted({p for p in policies if p != "noeviction"})
    if evicting:
        raise SequenceConfigurationError(
            f"Redis runs with maxmemory-policy {', '.join(evicting)}; sequence views need "
            "'noeviction' (Redis's default), because evicting one of a sequence's keys serves "
            "duplicates or loses events silently. Set it with `CONFIG SET maxmemory-policy "
            "noeviction` and in redis.conf, and size maxmemory for the data (docs/scale.md)."
        )


def eviction_policies(client: Any) -> List[str]:
    """``maxmemory-policy`` of every primary the client writes to."""
    what = "checking Redis's maxmemory-policy"
    if hasattr(client, "get_primaries"):  # Redis Cluster: each primary has its own setting
        try:
            replies = client.config_get("maxmemory-policy", target_nodes=client.get_primaries())
        except RedisError as exc:
            raise SequenceStoreError(f"Redis failed while {what}: {exc}") from exc
        return [r["maxmemory-policy"] for r in _node_replies(replies)]
    (reply,) = execute(client, [("CONFIG", "GET", "maxmemory-policy")], what)
    pairs = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2]))
    return [_text(v) for k, v in pairs.items() if _text(k) == "maxmemory-policy"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _node_replies(replies: Any) -> List[Any]:
    # redis-py returns one reply for a single node, a {node: reply} dict for several.
    if isinstance(replies, dict) and "maxmemory-policy" in replies:
        return [replies]
    return list(replies.values())
