"""The online store's options (``online_store:`` in ``feature_store.yaml``): Feast's Redis options
plus ours, each checked when the file is loaded.

Feast pairs a store class and its config class by module and name (``XOnlineStore`` and
``XOnlineStoreConfig`` in one module, both ways), so ``SequenceRedisOnlineStoreConfig`` itself is
declared beside the store (online/store.py), on these options.
"""

from __future__ import annotations

from typing import Any, Optional

from feast.infra.online_stores.redis import RedisOnlineStoreConfig, RedisType
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from feast_sequence.feast_internals import parse_connection_string

__all__ = ["CONNECTION_STRING_FORM", "SequenceRedisOptions"]

CONNECTION_STRING_FORM = "host:port[,host:port][,password=...,ssl=true,db=N,socket_timeout=S,...]"
_TIMEOUT_PARAMS = ("socket_timeout", "socket_connect_timeout")


class SequenceRedisOptions(RedisOnlineStoreConfig):
    """Feast's Redis online store options, plus how calls that cannot reach Redis are retried and how
    many replicas must acknowledge each write (docs/replication.md)."""

    retries: NonNegativeInt = 0
    """How many times a call that cannot reach Redis is sent again before the error is raised.
    Safe for writes: every append is idempotent. How long a call waits is set by
    ``socket_timeout_seconds`` and ``socket_connect_timeout_seconds``."""
    retry_backoff_seconds: PositiveFloat = 0.05
    """First wait between retries; doubled each time, at most 2 s; each wait is drawn between half and
    all of it (equal jitter)."""
    socket_timeout_seconds: PositiveFloat = 5.0
    """How long a call waits for Redis to answer before it fails with the retriable
    ``SequenceStoreUnavailableError``, unless connection_string sets ``socket_timeout`` (which wins).
    Without one, a Redis that accepts connections but never answers blocks a call forever. Lower it
    (0.5 to 1) for latency-bound serving; keep it above replica_ack_timeout_ms."""
    socket_connect_timeout_seconds: PositiveFloat = 2.0
    """How long opening a connection to Redis may take, unless connection_string sets
    ``socket_connect_timeout`` (which wins)."""
    max_entities_per_request: PositiveInt = 10_000
    """Distinct entities one online request may read from a sequence view; more is refused."""
    min_replica_acks: NonNegativeInt = 0
    """Replicas that must acknowledge every write (Redis ``WAIT`` ending each write pipeline) before
    it succeeds; fewer raise the retriable ``SequenceStoreUnavailableError`` after ``retries``. 0 (the
    default) does not wait: Redis replication stays asynchronous."""
    replica_ack_timeout_ms: PositiveInt = 1000
    """How long one write waits for those acknowledgements; below the socket timeout
    (``socket_timeout`` in connection_string, else ``socket_timeout_seconds``)."""
    eviction_check_seconds: PositiveFloat = 60.0
    """How often a running store reads Redis's ``maxmemory-policy`` again (one ``CONFIG GET``; also
    when its client is made and by ``feast-sequence health``). A policy changed to an evicting one on
    a running server is refused (``SequenceConfigurationError`` on reads and writes) within this time."""
    compact_after: NonNegativeInt = 64
    """Events a sequence's tail (its sorted set) may hold before the writer that notices compacts
    it into the sequence's compressed block (docs/storage-layout.md); 0 never compacts on write,
    leaving it to ``feast-sequence compact``. Lower saves memory, higher saves CPU per write."""
    compact_in_background: bool = True
    """Whether a push's compaction runs after the push answered, in a worker thread of the writing
    process (online/background_compaction.py), so a push costs its append alone; a tail at twice
    ``compact_after`` is still compacted before the push answers. False compacts before answering."""
    erasures_path: str = "data/erasures"
    """Folder of the durable copy of erasure markers and the erase audit log (``feast-sequence
    erase``), relative to the repository; Redis holds the markers too, beside the sequences. Keep it
    on storage that outlives Redis (docs/privacy.md)."""

    @field_validator("connection_string")
    @classmethod
    def _check_connection_string(cls, value: str) -> str:
        # Checked when feature_store.yaml is loaded: Feast's parser accepts anything and the
        # first push would fail with a bare ValueError or KeyError('port').
        problem = _connection_string_problem(value)
        if problem:
            raise ValueError(
                f"connection_string={value!r}: {problem}; expected {CONNECTION_STRING_FORM}, "
                "for example '127.0.0.1:6379,socket_timeout=0.5'."
            )
        return value

    def connection_string_with_timeouts(self) -> str:
        """connection_string, with ``socket_timeout_seconds`` and ``socket_connect_timeout_seconds``
        added where it sets no timeout of its own."""
        _, params = parse_connection_string(self.connection_string)
        defaults = {
            "socket_timeout": self.socket_timeout_seconds,
            "socket_connect_timeout": self.socket_connect_timeout_seconds,
        }
        added = [f"{name}={seconds}" for name, seconds in defaults.items() if name not in params]
        return ",".join([self.connection_string, *added])

    @model_validator(mode="after")
    def _check_replica_acks(self) -> "SequenceRedisOptions":
        if not self.min_replica_acks:
            return self
        if self.redis_type == RedisType.redis_cluster:
            raise ValueError(
                f"min_replica_acks={self.min_replica_acks} is not supported with redis_type: "
                "redis_cluster (WAIT must follow the writes on their own connection, and a cluster "
                "pipeline spreads them over one connection per primary); use min_replica_acks: 0."
            )
        _, params = parse_connection_string(self.connection_string)
        if "socket_timeout" in params:
            socket_timeout, where = params["socket_timeout"], "in connection_string"
        else:
            socket_timeout, where = self.socket_timeout_seconds, "(socket_timeout_seconds)"
        if socket_timeout is not None and float(socket_timeout) * 1000 <= self.replica_ack_timeout_ms:
            raise ValueError(
                f"replica_ack_timeout_ms={self.replica_ack_timeout_ms} must be shorter than "
                f"socket_timeout={socket_timeout} s {where}, or a write still waiting for "
                "replicas is cut off as a timeout; lower replica_ack_timeout_ms or raise socket_timeout."
            )
        return self


def _connection_string_problem(value: str) -> Optional[str]:
    """What is wrong with a connection_string, in the terms of Feast's parser; None if nothing."""
    if "${" in value:
        return "it holds an environment variable that is not set (Feast expands ${VAR} only when set)"
    nodes = [part for part in value.split(",") if "=" not in part]
    if not nodes:
        return "it names no host:port"
    for node in nodes:
        if not node.strip():
            return "it has an empty part (an empty string or a stray comma)"
        if node.count(":") != 1:
            return f"{node!r} lacks a port" if ":" not in node else f"{node!r} is not host:port"
        host, port = node.split(":")
        if not host:
            return f"{node!r} lacks a host"
        if not (port.isdigit() and 1 <= int(port) <= 65535):
            return f"port {port!r} is not a number from 1 to 65535"
    _, params = parse_connection_string(value)
    for name in _TIMEOUT_PARAMS:
        seconds = params.get(name)  # null (None) switches a timeout off, as in redis-py
        if name in params and seconds is not None and not _positive_number(seconds):
            return f"{name}={seconds!r} is not a positive number of seconds"
    return None


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
