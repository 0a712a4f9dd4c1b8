"""The Redis online store for sequence views; regular views keep Feast's built-in Redis behaviour.

Configure it in ``feature_store.yaml`` (together with ``provider: feast_sequence.SequenceProvider``)::

    online_store:
      type: feast_sequence.online_store.SequenceRedisOnlineStore
      connection_string: "localhost:6379"

Every option of Feast's Redis store applies (``redis_type``, ``connection_string`` with password,
ssl and db, ``key_ttl_seconds`` for regular views, ...).
"""

from __future__ import annotations

import importlib
import time
from datetime import datetime
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, TypeVar

import pandas as pd
from feast import Entity, FeatureView
from feast.infra.online_stores.redis import (
    RedisOnlineStore,
    RedisOnlineStoreConfig,
    RedisType,
)
from feast.online_response import OnlineResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from feast_sequence import feast_internals
from feast_sequence.definitions.settings import SequenceSettings, is_sequence_view, sequence_settings
from feast_sequence.errors import SequenceConfigurationError
from feast_sequence.feast_internals import parse_connection_string
from feast_sequence.online.entity_rows import check_entity_rows, sequence_key_columns
from feast_sequence.online.expired_pushes import report_expired
from feast_sequence.online.null_timestamps import encode_null_timestamps
from feast_sequence.serving.enrichment_cache import EnrichmentCaches
from feast_sequence.serving.pipeline import serve
from feast_sequence.serving.use_case import is_use_case
from feast_sequence.storage.append import encode_frame, encode_proto_rows, plan_append, tails_to_compact
from feast_sequence.storage.client import refuse_eviction, with_default_timeouts, without_retries
from feast_sequence.storage.codec import EncodedEvents
from feast_sequence.storage.compaction import compact
from feast_sequence.storage.drivers import Operation, drive, drive_async
from feast_sequence.storage.evolution import StoredDefinition, evolve
from feast_sequence.storage.index_enrich import plan_index_enrichment, plan_proto_row_enrichment
from feast_sequence.storage.keys import definitions_key, sequence_keys_of, view_scan_pattern, zset_key_of
from feast_sequence.storage.lookup import one_call_per_key
from feast_sequence.storage.read import (
    Row,
    check_entity_limit,
    decode_rows,
    plan_read,
    populate_sequences,
    read_commands,
)
from feast_sequence.storage.redis_io import (
    Access,
    Command,
    RoundTrip,
    evalsha,
    execute,
    replica_acks,
    retry_policy,
    run_round_trip,
    run_round_trip_async,
)
from feast_sequence.storage.scripts import EXPIRE

__all__ = ["SequenceRedisOnlineStore", "SequenceRedisOnlineStoreConfig"]

PROVIDER_PATH = "feast_sequence.SequenceProvider"

Result = TypeVar("Result")
StoreOperation = Operation[RoundTrip, Result]
"""A store operation: yields round trips to Redis and receives their replies (storage/drivers.py)."""

# The config class lives in the store's module: Feast finds the store class through it.
CONNECTION_STRING_FORM = "host:port[,host:port][,password=...,ssl=true,db=N,socket_timeout=S,...]"
_TIMEOUT_PARAMS = ("socket_timeout", "socket_connect_timeout")


class SequenceRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """Feast's Redis online store options, plus how calls that cannot reach Redis are retried and how
    many replicas must acknowledge each write (docs/replication.md)."""

    # Feast picks the store class by this field: a plugin's config must override the parent's
    # Literal["redis"] with its own value, which mypy reports as an incompatible override.
    type: Literal["feast_sequence.online_store.SequenceRedisOnlineStore"] = (
        "feast_sequence.online_store.SequenceRedisOnlineStore"  # type: ignore[assignment]
    )
    retries: NonNegativeInt = 0
    """How many times a call that cannot reach Redis is sent again before the error is raised.
    Safe for writes: every append is idempotent. How long a call waits is set by
    ``socket_timeout_seconds`` and ``socket_connect_timeout_seconds``."""
    retry_backoff_seconds: PositiveFloat = 0.05
    """First wait between retries; doubled each time, at most 2 s."""
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
    compact_after: NonNegativeInt = 64
    """Events a sequence's tail (its sorted set) may hold before the writer that notices compacts
    it into the sequence's compressed block (docs/storage-layout.md); 0 never compacts on write,
    leaving it to ``feast-sequence compact``. Lower saves memory, higher saves CPU per write."""

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
    def _check_replica_acks(self) -> "SequenceRedisOnlineStoreConfig":
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


class SequenceRedisOnlineStore(RedisOnlineStore):
    """Appends events to per-entity sorted sets and serves them as lists, newest first."""

    _eviction_checked = False  # set per instance once Redis's maxmemory-policy was checked
    #: The request time of use cases (seconds since the epoch): windows and ages count from it.
    #: Tests replace it on an instance to serve "as of" a training row's timestamp.
    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self) -> None:
        super().__init__()
        #: This instance's serving-time enrichment caches: empty until a cached enrichment is
        #: served, so a store without cached enrichments serves exactly as without caches.
        self.enrichment_caches = EnrichmentCaches()

    # --- connections ---

    def _get_client(self, online_store_config: RedisOnlineStoreConfig) -> Any:
        """Feast's client, with the default timeouts where connection_string sets none, and
        redis-py's own retries off: ours (``retries``) resend whole, idempotent pipelines, and
        redis-py's default (3 tries with backoff) would stretch a failure to seconds."""
        fresh = self._client is None
        client = super()._get_client(with_default_timeouts(online_store_config))
        if fresh:
            without_retries(client)
        if not self._eviction_checked:
            refuse_eviction(client)
            self._eviction_checked = True
        return client

    async def _get_client_async(self, online_store_config: RedisOnlineStoreConfig) -> Any:
        fresh = self._client_async is None
        client = await super()._get_client_async(with_default_timeouts(online_store_config))
        if fresh:
            without_retries(client)
        if not self._eviction_checked:
            self._get_client(online_store_config)  # checks the eviction policy once, synchronously
        return client

    # --- writes -------------------------------------------------------------------------------

    def write_events(self, config: RepoConfig, table: FeatureView, df: pd.DataFrame) -> int:
        """Append every row of ``df`` as an event of sequence view ``table``; returns the row count.

        The whole frame is validated before anything is sent, so bad input writes nothing.
        """
        return self._run(config, _write_events(config, sequence_settings(table), df))

    async def write_events_async(self, config: RepoConfig, table: FeatureView, df: pd.DataFrame) -> int:
        return await self._run_async(config, _write_events(config, sequence_settings(table), df))

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: List[Tuple[EntityKeyProto, Dict[str, ValueProto], datetime, Optional[datetime]]],
        progress: Optional[Callable[[int], Any]],
    ) -> None:
        if not is_sequence_view(table):
            return super().online_write_batch(config, table, data, progress)
        write = _write_proto_rows(config, sequence_settings(table), data, progress)
        return self._run(config, write)

    async def online_write_batch_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: List[Tuple[EntityKeyProto, Dict[str, ValueProto], datetime, Optional[datetime]]],
        progress: Optional[Callable[[int], Any]],
    ) -> None:
        if not is_sequence_view(table):
            return await super().online_write_batch_async(config, table, data, progress)
        write = _write_proto_rows(config, sequence_settings(table), data, progress)
        return await self._run_async(config, write)

    # --- running operations -------------------------------------------------------------------

    def _run(self, config: RepoConfig, operation: StoreOperation[Result]) -> Result:
        """Run a store operation (a generator of round trips) with the sync client."""
        online = config.online_store
        return drive(operation, lambda trip: run_round_trip(self._get_client(online), trip))

    async def _run_async(self, config: RepoConfig, operation: StoreOperation[Result]) -> Result:
        """Run a store operation with the ``redis.asyncio`` client."""
        online = config.online_store

        async def run(trip: RoundTrip) -> List[Any]:
            return await run_round_trip_async(await self._get_client_async(online), trip)

        return await drive_async(operation, run)

    # --- reads --------------------------------------------------------------------------------

    def get_online_features(
        self,
        config: RepoConfig,
        features: Any,
        entity_rows: Any,
        registry: Any,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        """Feast's online read; a sequence use case (``SequenceUseCase``) goes through its serving
        pipeline (feast_sequence.serving) instead. Null timestamps go out as nulls (null_timestamps.py)."""
        request = (config, features, entity_rows, registry, project, full_feature_names)
        if not _is_use_case_request(*request):
            response = super().get_online_features(*request, include_feature_view_version_metadata)
        else:
            response = self._run(config, serve(self, *request, include_feature_view_version_metadata))
        encode_null_timestamps(response.proto)
        return response

    async def get_online_features_async(
        self,
        config: RepoConfig,
        features: Any,
        entity_rows: Any,
        registry: Any,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        request = (config, features, entity_rows, registry, project, full_feature_names)
        if not _is_use_case_request(*request):
            response = await super().get_online_features_async(*request, include_feature_view_version_metadata)
        else:
            response = await self._run_async(config, serve(self, *request, include_feature_view_version_metadata))
        encode_null_timestamps(response.proto)
        return response

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: List[EntityKeyProto],
        requested_features: Optional[List[str]] = None,
    ) -> List[Row]:
        if not is_sequence_view(table):
            return super().online_read(config, table, entity_keys, requested_features)
        read = _online_read(config, sequence_settings(table), entity_keys, requested_features)
        return self._run(config, read)

    async def online_read_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: List[EntityKeyProto],
        requested_features: Optional[List[str]] = None,
    ) -> List[Row]:
        if not is_sequence_view(table):
            return await super().online_read_async(config, table, entity_keys, requested_features)
        read = _online_read(config, sequence_settings(table), entity_keys, requested_features)
        return await self._run_async(config, read)

    def _read_features_per_fv(
        self,
        config: RepoConfig,
        grouped_refs: List[Tuple[Any, List[str]]],
        join_key_values: Dict[str, List[Any]],
        entity_name_to_join_key_map: Dict[str, str],
        online_features_response: Any,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """Read every requested view, sequence or regular, in one Redis pipeline."""
        request = (grouped_refs, join_key_values, entity_name_to_join_key_map, online_features_response)
        flags = (full_feature_names, include_feature_view_version_metadata)
        read = self._read_features(config, *request, *flags)
        self._run(config, read)

    async def _read_features_per_fv_async(
        self,
        config: RepoConfig,
        grouped_refs: List[Tuple[Any, List[str]]],
        join_key_values: Dict[str, List[Any]],
        entity_name_to_join_key_map: Dict[str, str],
        online_features_response: Any,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        request = (grouped_refs, join_key_values, entity_name_to_join_key_map, online_features_response)
        flags = (full_feature_names, include_feature_view_version_metadata)
        read = self._read_features(config, *request, *flags)
        await self._run_async(config, read)

    def _read_features(
        self,
        config: RepoConfig,
        grouped_refs: List[Tuple[Any, List[str]]],
        join_key_values: Dict[str, List[Any]],
        entity_name_to_join_key_map: Dict[str, str],
        response: Any,
        full_feature_names: bool,
        include_version_metadata: bool,
    ) -> StoreOperation[None]:
        plan = self._plan_request(config, grouped_refs, join_key_values, entity_name_to_join_key_map)
        replies = yield RoundTrip(plan.commands, "reading features", retry_policy(config.online_store))
        plan.populate(replies, response, full_feature_names, include_version_metadata)

    def _plan_request(
        self,
        config: RepoConfig,
        grouped_refs: List[Tuple[Any, List[str]]],
        join_key_values: Dict[str, List[Any]],
        entity_name_to_join_key_map: Dict[str, str],
    ) -> "_RequestPlan":
        plan = _RequestPlan()
        now_us = time.time_ns() // 1000  # one "now" for the whole request
        key_cache: Dict[Tuple[int, ...], bytes] = {}
        for table, requested_features in grouped_refs:
            values, idxs, output_len = feast_internals.unique_entities(
                table, join_key_values, entity_name_to_join_key_map
            )
            if is_sequence_view(table):
                check_entity_limit(table.name, len(values), config.online_store.max_entities_per_request)
                settings = sequence_settings(table)
                read = plan_read(settings, requested_features)
                commands = read_commands(settings, config.project, values, now_us, key_cache=key_cache)
                plan.add(commands, partial(populate_sequences, read, table, idxs, output_len))
            else:
                plan.add(*self.plan_regular_read(config, table, requested_features, values, idxs, output_len))
        return plan

    def plan_regular_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        requested_features: List[str],
        values: Any,
        idxs: Any,
        output_len: int,
    ) -> Tuple[List[Command], Callable[..., None]]:
        """A regular view's HMGETs, and how to put their replies into the response (Feast's way)."""
        fv_name = feast_internals.versioned_view_name(table, config)
        entity_keys = feast_internals.entity_key_protos(values)
        redis_keys = feast_internals.redis_keys_for_entities(self, config, entity_keys)
        names, hset_keys = feast_internals.hset_keys_for_features(self, table, list(requested_features), fv_name)
        commands: List[Command] = [("HMGET", key, *hset_keys) for key in redis_keys]
        return commands, partial(self._fill_regular, fv_name, names, table, idxs, output_len)

    def _fill_regular(
        self,
        fv_name: str,
        names: List[str],
        table: FeatureView,
        idxs: Any,
        output_len: int,
        replies: List[Any],
        response: Any,
        full_feature_names: bool,
        include_version_metadata: bool,
    ) -> None:
        """Regular views: Feast's own decoding and response building."""
        rows = feast_internals.regular_rows(self, replies, fv_name, names)
        feast_internals.populate_response(
            names, rows, idxs, response, full_feature_names, table, output_len, include_version_metadata
        )

    # --- infrastructure -----------------------------------------------------------------------

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        sequences = [t for t in tables_to_keep if is_sequence_view(t)]
        if sequences and not _uses_sequence_provider(config):
            raise SequenceConfigurationError(
                f"Sequence view(s) {[t.name for t in sequences]} need "
                f"'provider: {PROVIDER_PATH}' in feature_store.yaml (found {config.provider!r}); "
                "it turns pushed rows into events."
            )
        if sequences or any(is_sequence_view(t) for t in tables_to_delete):
            self.check_eviction_policy(config)
        # Every view is checked against what is stored before anything is changed: a refused view
        # aborts the whole apply (Feast commits the registry only after this returns).
        changes = self._definition_changes(config, [sequence_settings(t) for t in sequences])
        regular_deletes = [t for t in tables_to_delete if not is_sequence_view(t)]
        for table in tables_to_delete:
            if is_sequence_view(table):
                self.delete_sequence_view(config, table.name)
        for settings, previous, record in changes:
            if previous is not None and previous.ttl_us != record.ttl_us:
                self.expire_sequence_view(config, settings)  # a scan of the view's keys: only on change
            _run_writes(
                self._get_client(config.online_store),
                [("HSET", definitions_key(config.project), settings.view_name, record.to_json())],
                config.online_store,
                f"recording the definition of sequence view '{settings.view_name}'",
            )
        super().update(config, regular_deletes, tables_to_keep, entities_to_delete, entities_to_keep, partial)

    def _definition_changes(
        self, config: RepoConfig, views: Sequence[SequenceSettings]
    ) -> List[Tuple[SequenceSettings, Optional[StoredDefinition], StoredDefinition]]:
        """Per view: its stored definition (None if none) and the new one; raises on a refused change."""
        if not views:
            return []
        replies = execute(
            self._get_client(config.online_store),
            [("HMGET", definitions_key(config.project), *[s.view_name for s in views])],
            "reading the stored definitions of sequence views",
            retry_policy(config.online_store),
        )[0]
        changes = []
        for settings, raw in zip(views, replies):
            previous = StoredDefinition.from_json(raw) if raw is not None else None
            changes.append((settings, previous, evolve(previous, settings)))
        return changes

    def stored_definitions(self, config: RepoConfig) -> Dict[str, StoredDefinition]:
        """Every sequence view of the project that Redis holds a definition record for."""
        raw = execute(
            self._get_client(config.online_store),
            [("HGETALL", definitions_key(config.project))],
            "reading the stored definitions of sequence views",
            retry_policy(config.online_store),
        )[0]
        return {name.decode(): StoredDefinition.from_json(text) for name, text in raw.items()}

    def check_eviction_policy(self, config: RepoConfig) -> None:
        """Refuse a Redis that may evict keys (checked when the client is made, and again here)."""
        refuse_eviction(self._get_client(config.online_store))

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        for table in tables:
            if is_sequence_view(table):
                self.delete_sequence_view(config, table.name)
        super().teardown(config, [t for t in tables if not is_sequence_view(t)], entities)

    def delete_sequence_view(self, config: RepoConfig, view_name: str) -> int:
        """Delete every key of one sequence view in this project, and its stored definition; returns
        how many sequence keys were deleted."""
        client = self._get_client(config.online_store)
        deleted = sum(
            sum(_run_writes(client, [("UNLINK", k) for k in batch], config.online_store, "deleting a sequence view"))
            for batch in _scan_batches(client, view_scan_pattern(config.project, view_name))
        )
        _run_writes(
            client,
            [("HDEL", definitions_key(config.project), view_name)],
            config.online_store,
            "deleting a sequence view",
        )
        return deleted

    def expire_sequence_view(self, config: RepoConfig, settings: SequenceSettings) -> int:
        """Set every stored sequence of a view to expire under its current TTL (none: never), as the
        next write would; returns how many sequences were updated. Run by `feast apply` when the TTL
        changes, so a removed or raised TTL no longer deletes keys at the old time."""
        client = self._get_client(config.online_store)
        args = (settings.ttl_us or 0, "1" if settings.dedup_by else "0")
        updated = 0
        for batch in _scan_batches(client, view_scan_pattern(config.project, settings.view_name)):
            sequences = sorted({zset_key_of(k) for k in batch})
            commands = [evalsha(EXPIRE, sequence_keys_of(z), args) for z in sequences]
            updated += len(_run_writes(client, commands, config.online_store, _expiring(settings)))
        return updated

    def compact_sequence_view(self, config: RepoConfig, settings: SequenceSettings, batch: int = 200) -> int:
        """Compact every stored sequence of a view whose tail holds events (``feast-sequence
        compact``); returns how many were compacted. Safe beside writers, readers and other
        compactors: each sequence is replaced by compare-and-set (storage/compaction.py). Also
        converts sequences written before blocks existed (storage format 2) in place."""
        client = self._get_client(config.online_store)
        online = config.online_store
        compacted = 0
        for keys in _scan_batches(client, view_scan_pattern(config.project, settings.view_name), batch):
            sequences = [sequence_keys_of(z) for z in sorted({zset_key_of(k) for k in keys})]
            operation = compact(settings, sequences, retry_policy(online), replica_acks(online))
            compacted += drive(operation, partial(run_round_trip, client))
        return compacted


def _write_events(config: RepoConfig, settings: SequenceSettings, df: pd.DataFrame) -> StoreOperation[int]:
    df = yield from _with_index_enrichments(config, settings, df, plan_index_enrichment)
    events = encode_frame(settings, df)
    yield from _append(config, settings, events)
    return len(events)


def _write_proto_rows(
    config: RepoConfig,
    settings: SequenceSettings,
    data: List[Tuple[EntityKeyProto, Dict[str, ValueProto], datetime, Optional[datetime]]],
    progress: Optional[Callable[[int], Any]],
) -> StoreOperation[None]:
    data = yield from _with_index_enrichments(config, settings, data, plan_proto_row_enrichment)
    yield from _append(config, settings, encode_proto_rows(settings, data))
    if progress:
        progress(len(data))


def _with_index_enrichments(
    config: RepoConfig, settings: SequenceSettings, rows: Any, plan: Any
) -> StoreOperation[Any]:
    """``rows`` (a frame, or Feast's proto rows, per ``plan``) with the view's index-time enriched
    fields, looked up in one pipeline; unchanged for views without enrichments."""
    lookups, enriched = plan(
        settings,
        config.project,
        config.entity_key_serialization_version,
        rows,
        one_call_per_key(config.online_store),
    )
    if not lookups:
        return enriched([])
    replies = yield RoundTrip(lookups, _enriching(settings), retry_policy(config.online_store))
    return enriched(replies)


def _append(config: RepoConfig, settings: SequenceSettings, events: EncodedEvents) -> StoreOperation[None]:
    online = config.online_store
    commands = plan_append(settings, config.project, events)
    what = _appending(settings, events)
    sizes = yield RoundTrip(commands, what, retry_policy(online), replica_acks(online), Access.WRITE)
    report_expired(config.project, settings, events.scores_us)
    full = tails_to_compact(settings, commands, sizes, online.compact_after)
    yield from compact(settings, full, retry_policy(online), replica_acks(online))


def _online_read(
    config: RepoConfig,
    settings: SequenceSettings,
    entity_keys: List[EntityKeyProto],
    requested_features: Optional[List[str]],
) -> StoreOperation[List[Row]]:
    read = plan_read(settings, requested_features)
    commands = read_commands(settings, config.project, _rows(entity_keys))
    replies = yield RoundTrip(commands, _reading(settings), retry_policy(config.online_store))
    return decode_rows(read, replies)


def _is_use_case_request(
    config: RepoConfig, features: Any, entity_rows: Any, registry: Any, project: str, full_feature_names: bool
) -> bool:
    """Whether a request goes to the serving pipeline; first, refuse its sequence keys of the wrong
    type (for Feast's path too)."""
    _check_sequence_keys(registry, project, features, entity_rows, full_feature_names)
    return is_use_case(features)


def _check_sequence_keys(
    registry: Any, project: str, features: Any, entity_rows: Any, full_feature_names: bool
) -> None:
    """Refuse request keys of the wrong type for sequence views before Feast's lenient conversion
    reads them as another entity. The request context is the one Feast resolves next (cached)."""
    entity_name_to_join_key, grouped_refs = feast_internals.request_grouped_refs(
        registry, project, features, full_feature_names
    )
    columns = sequence_key_columns((table for table, _ in grouped_refs), entity_name_to_join_key)
    check_entity_rows(columns, entity_rows)


def _rows(entity_keys: Sequence[EntityKeyProto]) -> List[Dict[str, ValueProto]]:
    return [dict(zip(k.join_keys, k.entity_values)) for k in entity_keys]


def _scan_batches(client: Any, pattern: bytes, size: int = 1000) -> Iterator[List[bytes]]:
    """Every key matching ``pattern``, in lists of up to ``size``."""
    batch: List[bytes] = []
    for key in client.scan_iter(match=pattern, count=size):
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _run_writes(client: Any, commands: List[Command], online_config: Any, what: str) -> List[Any]:
    return execute(client, commands, what, retry_policy(online_config), replica_acks(online_config), Access.WRITE)


def _uses_sequence_provider(config: RepoConfig) -> bool:
    """Whether the configured provider (a dotted class path) is ``SequenceProvider`` or a subclass:
    it carries ``converts_pushes_to_events``, so this module need not import the provider."""
    if "." not in config.provider:
        return False
    module_name, class_name = config.provider.rsplit(".", 1)
    provider_class = getattr(importlib.import_module(module_name), class_name, None)
    return bool(getattr(provider_class, "converts_pushes_to_events", False))


def _appending(settings: SequenceSettings, events: EncodedEvents) -> str:
    return f"appending {len(events)} event(s) to sequence view '{settings.view_name}'"


def _enriching(settings: SequenceSettings) -> str:
    return f"looking up index-time enrichments of sequence view '{settings.view_name}'"


def _expiring(settings: SequenceSettings) -> str:
    return f"applying the TTL of sequence view '{settings.view_name}' to its stored sequences"


def _reading(settings: SequenceSettings) -> str:
    return f"reading sequence view '{settings.view_name}'"


class _RequestPlan:
    """The commands of one online request and, per view, how to put their replies into the response."""

    def __init__(self) -> None:
        self.commands: List[Command] = []
        self._parts: List[Tuple[int, int, Callable[..., None]]] = []

    def add(self, commands: List[Command], fill: Callable[..., None]) -> None:
        """``fill(replies, response, full_feature_names, include_version_metadata)`` for this view."""
        start = len(self.commands)
        self.commands.extend(commands)
        self._parts.append((start, len(self.commands), fill))

    def populate(
        self, replies: List[Any], response: Any, full_feature_names: bool, include_version_metadata: bool
    ) -> None:
        for start, end, fill in self._parts:
            fill(replies[start:end], response, full_feature_names, include_version_metadata)
