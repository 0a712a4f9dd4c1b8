"""The Redis online store for sequence views; regular views keep Feast's built-in Redis behaviour.

Configure it in ``feature_store.yaml`` (together with ``provider: feast_sequence.SequenceProvider``)::

    online_store:
      type: feast_sequence.online_store.SequenceRedisOnlineStore
      connection_string: "localhost:6379"

Every option of Feast's Redis store applies (``redis_type``, ``connection_string`` with password,
ssl and db, ``key_ttl_seconds`` for regular views, ...); ours are in online/config.py.

This class holds only Feast's entry points, as plain methods: a sequence view's call (or a use
case's request) runs a store operation (online/operations.py, serving/pipeline.py), a generator of
Redis round trips, with the sync driver in the sync method and the async driver in the async one;
other views keep Feast's own method. The logic is written once; the two forms differ only in the
driver (storage/drivers.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple, TypeVar, Union

import pandas as pd
from feast import Entity, FeatureService, FeatureView
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.online_response import OnlineResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.repo_config import RepoConfig

from feast_sequence.definitions.settings import SequenceSettings, is_sequence_view, sequence_settings
from feast_sequence.online import maintenance, operations
from feast_sequence.online.background_compaction import BackgroundCompactions
from feast_sequence.online.config import SequenceRedisOptions
from feast_sequence.online.null_timestamps import encode_null_timestamps
from feast_sequence.online.operations import Defer, ProtoRows, StoreOperation
from feast_sequence.online.permissions import assert_can_read
from feast_sequence.online.request_plan import is_use_case_request, plan_regular_read, plan_request
from feast_sequence.serving.enrichment_cache import EnrichmentCaches
from feast_sequence.serving.pipeline import serve
from feast_sequence.serving.plan_cache import PlanCache
from feast_sequence.serving.read_plan import Fill
from feast_sequence.storage.client import refuse_eviction, with_default_timeouts, without_retries
from feast_sequence.storage.codec import EncodedEvents
from feast_sequence.storage.drivers import drive, drive_async
from feast_sequence.storage.evolution import StoredDefinition
from feast_sequence.storage.read import Row
from feast_sequence.storage.redis_io import Command, RoundTrip, run_round_trip, run_round_trip_async

__all__ = ["SequenceRedisOnlineStore", "SequenceRedisOnlineStoreConfig"]

Result = TypeVar("Result")
_NOT_WRITTEN = "This push wrote nothing; send it again."
Keys = List[EntityKeyProto]
Features = Optional[List[str]]


def _with_null_timestamps(response: OnlineResponse) -> OnlineResponse:
    encode_null_timestamps(response.proto)  # null timestamps go out as nulls (null_timestamps.py)
    return response


class SequenceRedisOnlineStoreConfig(SequenceRedisOptions):
    """The store's config (its options: online/config.py). Feast finds it from the store's dotted
    path, and the store from its module, so it is declared here."""

    # Feast picks the store class by this field: a plugin's config must override the parent's
    # Literal["redis"] with its own value, which mypy reports as an incompatible override.
    type: Literal["feast_sequence.online_store.SequenceRedisOnlineStore"] = (
        "feast_sequence.online_store.SequenceRedisOnlineStore"  # type: ignore[assignment]
    )


class SequenceRedisOnlineStore(RedisOnlineStore):
    """Appends events to per-entity sorted sets and serves them as lists, newest first."""

    _eviction_checked_at: Optional[float] = None  # monotonic time of the last maxmemory-policy check
    #: Set by ``SequenceProvider`` on the store it makes: the provider turns pushed rows into
    #: events, so ``feast apply`` refuses sequence views on a store any other provider made.
    made_by_sequence_provider = False
    #: The request time of every read (seconds since the epoch), read once per request by the read
    #: planner (serving/read_plan.py): TTLs, windows and ages count from it. Tests replace it on an
    #: instance to serve "as of" a training row's timestamp.
    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self) -> None:
        super().__init__()
        #: This instance's serving-time enrichment caches: empty until a cached enrichment is
        #: served, so a store without cached enrichments serves exactly as without caches.
        self.enrichment_caches = EnrichmentCaches()
        #: Each sequence view's settings and decode plans, once per registry version.
        self.plan_cache = PlanCache()
        #: The compactions this instance's pushes triggered, run after they answered.
        self.compactions = BackgroundCompactions(self._get_client)

    # --- Feast's entry points, sync and async ----------------------------------------------------

    def online_write_batch(
        self, config: RepoConfig, table: FeatureView, data: ProtoRows, progress: Optional[Callable[[int], Any]]
    ) -> None:
        if not is_sequence_view(table):
            return super().online_write_batch(config, table, data, progress)
        self._run(config, operations.write_proto_rows(config, sequence_settings(table), data, progress))

    async def online_write_batch_async(
        self, config: RepoConfig, table: FeatureView, data: ProtoRows, progress: Optional[Callable[[int], Any]]
    ) -> None:
        if not is_sequence_view(table):
            return await super().online_write_batch_async(config, table, data, progress)
        await self._run_async(config, operations.write_proto_rows(config, sequence_settings(table), data, progress))

    def online_read(
        self, config: RepoConfig, table: FeatureView, entity_keys: Keys, requested_features: Features = None
    ) -> List[Row]:
        if not is_sequence_view(table):
            return super().online_read(config, table, entity_keys, requested_features)
        return self._run(config, self._read_rows(config, table, entity_keys, requested_features))

    async def online_read_async(
        self, config: RepoConfig, table: FeatureView, entity_keys: Keys, requested_features: Features = None
    ) -> List[Row]:
        if not is_sequence_view(table):
            return await super().online_read_async(config, table, entity_keys, requested_features)
        return await self._run_async(config, self._read_rows(config, table, entity_keys, requested_features))

    def get_online_features(
        self,
        config: RepoConfig,
        features: Union[List[str], FeatureService],
        entity_rows: Any,
        registry: Any,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        request = (config, features, entity_rows, registry, project, full_feature_names)
        use_case = self._use_case_request(*request, include_feature_view_version_metadata)
        if use_case is None:
            return _with_null_timestamps(super().get_online_features(*request, include_feature_view_version_metadata))
        return _with_null_timestamps(self._run(config, use_case))

    async def get_online_features_async(
        self,
        config: RepoConfig,
        features: Union[List[str], FeatureService],
        entity_rows: Any,
        registry: Any,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        request = (config, features, entity_rows, registry, project, full_feature_names)
        use_case = self._use_case_request(*request, include_feature_view_version_metadata)
        if use_case is None:
            feast_read = super().get_online_features_async(*request, include_feature_view_version_metadata)
            return _with_null_timestamps(await feast_read)
        return _with_null_timestamps(await self._run_async(config, use_case))

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
        """Every view of a request, sequence or regular, in one Redis pipeline (never Feast's per-view reads)."""
        plan = plan_request(self, config, grouped_refs, join_key_values, entity_name_to_join_key_map)
        flags = (full_feature_names, include_feature_view_version_metadata)
        self._run(config, operations.read_request(config, plan, online_features_response, *flags))

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
        plan = plan_request(self, config, grouped_refs, join_key_values, entity_name_to_join_key_map)
        flags = (full_feature_names, include_feature_view_version_metadata)
        await self._run_async(config, operations.read_request(config, plan, online_features_response, *flags))

    def _use_case_request(
        self,
        config: RepoConfig,
        features: Union[List[str], FeatureService],
        entity_rows: Any,
        registry: Any,
        project: str,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> Optional[StoreOperation[OnlineResponse]]:
        """A use case's request (``SequenceUseCase``) as its serving pipeline (feast_sequence.serving);
        None for any other request, which Feast's method serves. First, in a server, the caller's
        ``READ_ONLINE`` on everything the request reads (permissions.py)."""
        assert_can_read(registry, project, features)
        if not is_use_case_request(
            registry, project, features, entity_rows, full_feature_names, self.plan_cache.settings
        ):
            return None
        if not isinstance(features, FeatureService):  # a use case is one (is_use_case_request)
            return None
        request = (config, features, entity_rows, registry, project, full_feature_names)
        return serve(self, *request, include_feature_view_version_metadata)

    def _read_rows(
        self, config: RepoConfig, table: FeatureView, entity_keys: Keys, requested_features: Features
    ) -> StoreOperation[List[Row]]:
        """A sequence view's ``online_read``, at the store's clock (as ``plan_reads`` reads it)."""
        now_us = int(self.clock() * 1_000_000)
        return operations.read_rows(config, sequence_settings(table), entity_keys, requested_features, now_us)

    # --- pushes (called by SequenceProvider) -----------------------------------------------------

    def write_events(self, config: RepoConfig, table: FeatureView, df: pd.DataFrame) -> int:
        """Append every row of ``df`` as an event of sequence view ``table``; returns the row count.
        The compaction it triggers runs after it returns (``compact_in_background``); a background
        compaction that failed since the last push is raised here, before anything is written."""
        self.compactions.raise_failure(_NOT_WRITTEN)
        settings = self.plan_cache.settings(table)
        return self._run(config, operations.write_events(config, settings, df, self._defer(config)))

    async def write_events_async(self, config: RepoConfig, table: FeatureView, df: pd.DataFrame) -> int:
        self.compactions.raise_failure(_NOT_WRITTEN)
        operation = operations.write_events(config, self.plan_cache.settings(table), df, self._defer(config))
        return await self._run_async(config, operation)

    async def write_encoded_events_async(self, config: RepoConfig, table: FeatureView, events: EncodedEvents) -> int:
        """``write_events_async`` of events already encoded (storage/json_events.py)."""
        self.compactions.raise_failure(_NOT_WRITTEN)
        operation = operations.write_encoded(config, self.plan_cache.settings(table), events, self._defer(config))
        return await self._run_async(config, operation)

    def _defer(self, config: RepoConfig) -> Optional[Defer]:
        """Where a push leaves its compactions: this store's worker, unless configured inline."""
        online = config.online_store
        if not (online.compact_in_background and online.compact_after):
            return None
        return lambda settings, keys: self.compactions.submit(config.project, settings, online, keys)

    def drain_compactions(self, timeout_seconds: Optional[float] = None) -> None:
        """Wait until the compactions this store's pushes triggered are done; raises the first that
        failed (``SequenceStoreError``). Scripts that end with a push need not call it: it also runs
        at interpreter exit."""
        self.compactions.drain(timeout_seconds)

    async def close(self) -> None:
        """Feast's ``FeatureStore.close``: the queued compactions finish first (their errors raised)."""
        await asyncio.to_thread(self.compactions.drain)
        await super().close()

    # --- running operations: the store's two drivers ---------------------------------------------

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

    # --- connections ------------------------------------------------------------------------------

    def _get_client(self, online_store_config: RedisOnlineStoreConfig) -> Any:
        """Feast's client, with the default timeouts where connection_string sets none, and
        redis-py's own retries off: ours (``retries``) resend whole, idempotent pipelines, and
        redis-py's default (3 tries with backoff) would stretch a failure to seconds."""
        fresh = self._client is None
        # Feast reads the config only to make the client: copy it (a pydantic copy) only then.
        config = with_default_timeouts(online_store_config) if fresh else online_store_config
        client = _without_retries_if(fresh, super()._get_client(config))
        if self._eviction_check_due(online_store_config):
            refuse_eviction(client)
            self._eviction_checked_at = time.monotonic()
        return client

    def _eviction_check_due(self, online_store_config: Any) -> bool:
        """Whether Redis's maxmemory-policy is to be read (again): when the client is made, then every
        ``eviction_check_seconds``, so a policy changed on a running server (``CONFIG SET``) is
        refused within that time instead of evicting sequences' keys silently."""
        checked = self._eviction_checked_at
        interval = online_store_config.eviction_check_seconds
        return checked is None or time.monotonic() - checked >= interval

    async def _get_client_async(self, online_store_config: RedisOnlineStoreConfig) -> Any:
        if self._eviction_check_due(online_store_config):
            self._get_client(online_store_config)  # checks the eviction policy, synchronously
        fresh = self._client_async is None
        config = with_default_timeouts(online_store_config) if fresh else online_store_config
        return _without_retries_if(fresh, await super()._get_client_async(config))

    def plan_regular_read(
        self, config: RepoConfig, table: FeatureView, requested: List[str], values: Any, idxs: Any, output_len: int
    ) -> Tuple[List[Command], Fill]:
        """A regular view's commands and filler, for serving/pipeline.py (online/request_plan.py)."""
        return plan_regular_read(self, config, table, requested, values, idxs, output_len)

    # --- infrastructure (online/maintenance.py) --------------------------------------------------

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        keep = [t for t in tables_to_keep if is_sequence_view(t)]
        delete = [t for t in tables_to_delete if is_sequence_view(t)]
        maintenance.check_provider(config, keep, self.made_by_sequence_provider)
        if keep or delete:
            maintenance.apply_views(self._get_client(config.online_store), config, keep, delete)
        regular_deletes = [t for t in tables_to_delete if not is_sequence_view(t)]
        super().update(config, regular_deletes, tables_to_keep, entities_to_delete, entities_to_keep, partial)

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        for table in tables:
            if is_sequence_view(table):
                self.delete_sequence_view(config, table.name)
        super().teardown(config, [t for t in tables if not is_sequence_view(t)], entities)

    def check_eviction_policy(self, config: RepoConfig) -> None:
        """Refuse a Redis that may evict keys (checked when the client is made, and again here)."""
        refuse_eviction(self._get_client(config.online_store))

    def stored_definitions(self, config: RepoConfig) -> Dict[str, StoredDefinition]:
        """Every sequence view of the project that Redis holds a definition record for."""
        return maintenance.stored_definitions(self._get_client(config.online_store), config)

    def delete_sequence_view(self, config: RepoConfig, view_name: str) -> int:
        """Delete every key of one sequence view, and its stored definition; returns the keys deleted."""
        return maintenance.delete_view(self._get_client(config.online_store), config, view_name)

    def expire_sequence_view(self, config: RepoConfig, settings: SequenceSettings) -> int:
        """Apply a view's current TTL to its stored sequences; returns how many were updated."""
        return maintenance.expire_view(self._get_client(config.online_store), config, settings)

    def compact_sequence_view(self, config: RepoConfig, settings: SequenceSettings, batch: int = 200) -> int:
        """Compact a view's stored sequences (``feast-sequence compact``); returns how many were."""
        return maintenance.compact_view(self._get_client(config.online_store), config, settings, batch)


def _without_retries_if(fresh: bool, client: Any) -> Any:
    """Turn redis-py's retries off on a client Feast just made (it keeps and reuses it)."""
    if fresh:
        without_retries(client)
    return client
