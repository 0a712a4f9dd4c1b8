"""The Redis online store for sequence views; regular views keep Feast's built-in Redis behaviour.

Configure it in ``feature_store.yaml`` (together with ``provider: feast_sequence.SequenceProvider``)::

    online_store:
      type: feast_sequence.online_store.SequenceRedisOnlineStore
      connection_string: "localhost:6379"

Every option of Feast's Redis store applies (``redis_type``, ``connection_string`` with password,
ssl and db, ``key_ttl_seconds`` for regular views, ...); ours are in online/config.py.

This class holds only Feast's entry points. Each one that Feast has in a sync and an async form is
made by ``_routed``/``_routed_async`` from a *route*, which picks the store operation
(online/operations.py) that serves the call, or None to leave it to Feast's own method: the logic
is written once and the two forms differ only in the driver that runs it.
"""

from __future__ import annotations

import functools
import time
from typing import (
    Any,
    Callable,
    Concatenate,
    Coroutine,
    Dict,
    List,
    Literal,
    Optional,
    ParamSpec,
    Sequence,
    Tuple,
    TypeVar,
)

import pandas as pd
from feast import Entity, FeatureView
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.online_response import OnlineResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.repo_config import RepoConfig

from feast_sequence import feast_internals
from feast_sequence.definitions.settings import SequenceSettings, is_sequence_view, sequence_settings
from feast_sequence.online import maintenance, operations
from feast_sequence.online.config import SequenceRedisOptions
from feast_sequence.online.null_timestamps import encode_null_timestamps
from feast_sequence.online.operations import ProtoRows, StoreOperation
from feast_sequence.online.permissions import assert_can_read
from feast_sequence.online.request_plan import Fill, is_use_case_request, plan_regular_read, plan_request
from feast_sequence.serving.enrichment_cache import EnrichmentCaches
from feast_sequence.serving.pipeline import serve
from feast_sequence.storage.client import refuse_eviction, with_default_timeouts, without_retries
from feast_sequence.storage.drivers import drive, drive_async
from feast_sequence.storage.evolution import StoredDefinition
from feast_sequence.storage.read import Row
from feast_sequence.storage.redis_io import Command, RoundTrip, run_round_trip, run_round_trip_async

__all__ = ["SequenceRedisOnlineStore", "SequenceRedisOnlineStoreConfig"]

Params = ParamSpec("Params")
Result = TypeVar("Result")

#: A route's answer: the operation serving the call and the config to run it with, or None for Feast's method.
Routed = Optional[Tuple[RepoConfig, StoreOperation[Result]]]
Entry = TypeVar("Entry", bound=Callable[..., Any])
Keys = List[EntityKeyProto]
Features = Optional[List[str]]
Progress = Optional[Callable[[int], Any]]


def _routed(
    feast_method: Callable[Concatenate[RedisOnlineStore, Params], Result],
    route: Callable[Concatenate[SequenceRedisOnlineStore, Params], Routed[Result]],
    finish: Optional[Callable[[Result], None]] = None,
) -> Callable[Concatenate[SequenceRedisOnlineStore, Params], Result]:
    """A sync Feast entry point: ``route``'s operation, run with the sync driver, else Feast's method;
    then ``finish`` on the result."""

    def entry_point(self: SequenceRedisOnlineStore, /, *args: Params.args, **kwargs: Params.kwargs) -> Result:
        routed = route(self, *args, **kwargs)
        result = feast_method(self, *args, **kwargs) if routed is None else self._run(*routed)
        if finish is not None:
            finish(result)
        return result

    return _named_after(feast_method, entry_point)


def _routed_async(
    feast_method: Callable[Concatenate[RedisOnlineStore, Params], Coroutine[Any, Any, Result]],
    route: Callable[Concatenate[SequenceRedisOnlineStore, Params], Routed[Result]],
    finish: Optional[Callable[[Result], None]] = None,
) -> Callable[Concatenate[SequenceRedisOnlineStore, Params], Coroutine[Any, Any, Result]]:
    """:func:`_routed` for the async form of an entry point, with the async driver."""

    async def entry_point(self: SequenceRedisOnlineStore, /, *args: Params.args, **kwargs: Params.kwargs) -> Result:
        routed = route(self, *args, **kwargs)
        result = await (feast_method(self, *args, **kwargs) if routed is None else self._run_async(*routed))
        if finish is not None:
            finish(result)
        return result

    return _named_after(feast_method, entry_point)


def _named_after(feast_method: Callable[..., Any], entry_point: Entry) -> Entry:
    """``help()`` and ``inspect.signature`` show Feast's method: its name, docstring and parameters."""
    functools.update_wrapper(entry_point, feast_method)
    entry_point.__qualname__ = f"SequenceRedisOnlineStore.{feast_method.__name__}"
    return entry_point


# --- routes: Feast's parameters, by name; the store operation that serves a call, or None ----------


def _sequence_write(
    store: SequenceRedisOnlineStore, /, config: RepoConfig, table: FeatureView, data: ProtoRows, progress: Progress
) -> Routed[None]:
    return _on_sequence_view(config, table, lambda view: operations.write_proto_rows(config, view, data, progress))


def _sequence_read(
    store: SequenceRedisOnlineStore,
    /,
    config: RepoConfig,
    table: FeatureView,
    entity_keys: Keys,
    requested_features: Features = None,
) -> Routed[List[Row]]:
    return _on_sequence_view(
        config, table, lambda view: operations.read_rows(config, view, entity_keys, requested_features)
    )


def _on_sequence_view(
    config: RepoConfig, table: FeatureView, operation: Callable[[SequenceSettings], StoreOperation[Result]]
) -> Routed[Result]:
    """A sequence view's calls run ``operation`` on its settings; other views' go to Feast's method."""
    return (config, operation(sequence_settings(table))) if is_sequence_view(table) else None


def _use_case_request(
    store: SequenceRedisOnlineStore,
    /,
    config: RepoConfig,
    features: Any,
    entity_rows: Any,
    registry: Any,
    project: str,
    full_feature_names: bool = False,
    include_feature_view_version_metadata: bool = False,
) -> Routed[OnlineResponse]:
    """A use case (``SequenceUseCase``) goes through its serving pipeline (feast_sequence.serving).
    First, in a server, the caller's ``READ_ONLINE`` on everything the request reads (permissions.py)."""
    assert_can_read(registry, project, features)
    if not is_use_case_request(registry, project, features, entity_rows, full_feature_names):
        return None
    request = (config, features, entity_rows, registry, project, full_feature_names)
    return config, serve(store, *request, include_feature_view_version_metadata)


def _one_pipeline(
    store: SequenceRedisOnlineStore,
    /,
    config: RepoConfig,
    grouped_refs: List[Tuple[Any, List[str]]],
    join_key_values: Dict[str, List[Any]],
    entity_name_to_join_key_map: Dict[str, str],
    online_features_response: Any,
    full_feature_names: bool,
    include_feature_view_version_metadata: bool,
) -> Routed[None]:
    """Every view of a request, sequence or regular, in one Redis pipeline (never Feast's per-view reads)."""
    plan = plan_request(store, config, grouped_refs, join_key_values, entity_name_to_join_key_map)
    flags = (full_feature_names, include_feature_view_version_metadata)
    return config, operations.read_request(config, plan, online_features_response, *flags)


def _encode_null_timestamps(response: OnlineResponse) -> None:
    encode_null_timestamps(response.proto)  # null timestamps go out as nulls (null_timestamps.py)


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

    _eviction_checked = False  # set per instance once Redis's maxmemory-policy was checked
    #: The request time of use cases (seconds since the epoch): windows and ages count from it.
    #: Tests replace it on an instance to serve "as of" a training row's timestamp.
    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self) -> None:
        super().__init__()
        #: This instance's serving-time enrichment caches: empty until a cached enrichment is
        #: served, so a store without cached enrichments serves exactly as without caches.
        self.enrichment_caches = EnrichmentCaches()

    # --- Feast's entry points, sync and async ----------------------------------------------------

    online_write_batch = _routed(RedisOnlineStore.online_write_batch, _sequence_write)
    online_write_batch_async = _routed_async(RedisOnlineStore.online_write_batch_async, _sequence_write)
    online_read = _routed(RedisOnlineStore.online_read, _sequence_read)
    online_read_async = _routed_async(RedisOnlineStore.online_read_async, _sequence_read)
    get_online_features = _routed(RedisOnlineStore.get_online_features, _use_case_request, _encode_null_timestamps)
    get_online_features_async = _routed_async(
        RedisOnlineStore.get_online_features_async, _use_case_request, _encode_null_timestamps
    )
    _read_features_per_fv = _routed(feast_internals.read_features_per_view, _one_pipeline)
    _read_features_per_fv_async = _routed_async(feast_internals.read_features_per_view_async, _one_pipeline)

    # --- pushes (called by SequenceProvider) -----------------------------------------------------

    def write_events(self, config: RepoConfig, table: FeatureView, df: pd.DataFrame) -> int:
        """Append every row of ``df`` as an event of sequence view ``table``; returns the row count."""
        return self._run(config, operations.write_events(config, sequence_settings(table), df))

    async def write_events_async(self, config: RepoConfig, table: FeatureView, df: pd.DataFrame) -> int:
        return await self._run_async(config, operations.write_events(config, sequence_settings(table), df))

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
        client = _without_retries_if(fresh, super()._get_client(with_default_timeouts(online_store_config)))
        if not self._eviction_checked:
            refuse_eviction(client)
            self._eviction_checked = True
        return client

    async def _get_client_async(self, online_store_config: RedisOnlineStoreConfig) -> Any:
        if not self._eviction_checked:
            self._get_client(online_store_config)  # checks the eviction policy once, synchronously
        fresh = self._client_async is None
        return _without_retries_if(fresh, await super()._get_client_async(with_default_timeouts(online_store_config)))

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
        maintenance.check_provider(config, keep)
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
