"""Every private Feast symbol feast-sequence uses, in one place.

Feast has no public API for these. Each is named here once, wrapped in a function with the
signature we rely on, and checked by ``tests/test_feast_internals.py``, so that a Feast release that
moves or changes one fails there, with the symbol's name, rather than deep inside a request.
(``online/store.py`` and ``storage/redis_io.py`` still reach into Feast's Redis store directly.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Set, Tuple, Union

import pandas as pd
from feast import FeatureService, FeatureStore, utils
from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.online_stores.redis import RedisOnlineStore, _versioned_fv_name
from feast.infra.passthrough_provider import PassthroughProvider
from feast.infra.provider import Provider
from feast.infra.registry.caching_registry import CachingRegistry
from feast.infra.registry.registry import Registry
from feast.value_type import ValueType

#: OnlineStore's hooks that read every view of an online request, sync and async, called by
#: ``get_online_features(_async)`` once the request is resolved. The store overrides them to read
#: every view in one Redis pipeline (online/store.py); naming them here makes a Feast that renames
#: them fail at import instead of silently reading view by view.
read_features_per_view = OnlineStore._read_features_per_fv
read_features_per_view_async = OnlineStore._read_features_per_fv_async


def parse_connection_string(connection_string: str) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """Feast's parse of a Redis ``connection_string``: the ``host:port`` nodes and the other
    parameters (typed: numbers, booleans). ``RedisOnlineStore._parse_connection_string``."""
    parsed: Tuple[List[Dict[str, Any]], Dict[str, Any]] = RedisOnlineStore._parse_connection_string(connection_string)
    return parsed


def feast_redis_client(online_config: Any) -> Any:
    """A new client built exactly as Feast's Redis online store builds it (plain, cluster or
    sentinel, with ssl and password from the connection string). ``RedisOnlineStore._get_client``."""
    return RedisOnlineStore()._get_client(online_config)


def redis_field_hash(text: str) -> bytes:
    """The hash field Feast's Redis store keeps ``"<view>:<feature>"`` under (murmur3_32, 4 bytes
    little-endian). ``feast.infra.online_stores.helpers._mmh3``."""
    field: bytes = _mmh3(text)
    return field


def store_provider(store: FeatureStore) -> Provider:
    """The provider a ``FeatureStore`` runs (ours, per feature_store.yaml), built once per store.
    ``FeatureStore._get_provider``."""
    return store._get_provider()


def validate_vector_features(store: FeatureStore, feature_view: Any, df: pd.DataFrame) -> None:
    """Raise Feast's ``ValueError`` for a pushed vector column of the wrong length, as
    ``write_to_online_store`` does before writing. ``FeatureStore._validate_vector_features``."""
    store._validate_vector_features(feature_view, df)


def current_registry_proto(registry: Any, project: str, allow_cache: bool) -> Any:
    """The registry proto Feast's next read through ``registry`` would use, refreshed exactly when
    Feast's would be (cache TTL expired, or the registry file changed in ``cache_mode: sync``); a new
    object after every refresh, the same object otherwise. ``Registry._get_registry_proto``; for the
    SQL and other caching registries, ``CachingRegistry._refresh_cached_registry_if_necessary`` and
    ``cached_registry_proto``. Registries without a cache (remote) give a new proto each call."""
    if isinstance(registry, Registry):
        return registry._get_registry_proto(project=project, allow_cache=allow_cache)
    if isinstance(registry, CachingRegistry):
        if allow_cache:
            registry._refresh_cached_registry_if_necessary()
        else:
            registry.refresh(project)
        return registry.cached_registry_proto
    return registry.proto()


def gunicorn_metrics_hooks() -> Tuple[Callable[..., None], Callable[..., None]]:
    """``feast serve``'s gunicorn hooks for metrics: ``post_worker_init(store, worker)`` starts a
    worker's resource and freshness monitoring, ``child_exit(server, worker)`` removes a dead
    worker's metric files. ``feature_server._gunicorn_post_worker_init`` and ``_gunicorn_child_exit``
    (imported here on use: the feature server pulls in FastAPI and gunicorn)."""
    from feast import feature_server

    return feature_server._gunicorn_post_worker_init, feature_server._gunicorn_child_exit


def rows_for_ingestion(
    provider: PassthroughProvider, feature_view: Any, df: pd.DataFrame, field_mapping: Any
) -> List[Any]:
    """A pushed frame converted to Feast's online rows for a regular view, as ``ingest_df`` does
    before writing (raises on a value the view cannot take).
    ``PassthroughProvider._prep_rows_to_write_for_ingestion``."""
    rows: List[Any] = provider._prep_rows_to_write_for_ingestion(
        feature_view=feature_view, df=df, field_mapping=field_mapping
    )
    return rows


# --- training data: what FeatureStore.get_historical_features hands the provider -------------


@dataclass(frozen=True)
class HistoricalRequest:
    """A ``get_historical_features`` request resolved as Feast resolves it for the provider."""

    requested_refs: List[str]
    """The refs of ``features``, in order (what collisions are checked on)."""
    feature_views: List[Any]
    """The views the provider is given (on-demand views' sources included)."""
    feature_refs: List[str]
    """The refs the provider is given: ``requested_refs`` plus the ones on-demand views read."""
    on_demand_feature_views: List[Any]


def historical_request(registry: Any, project: str, features: Union[List[str], FeatureService]) -> HistoricalRequest:
    """Resolve ``features`` exactly as ``FeatureStore.get_historical_features`` (Feast 0.67) does
    before calling ``provider.get_historical_features``: ``utils._get_features``,
    ``utils._get_feature_views_to_use`` and ``utils._group_feature_refs``."""
    requested = utils._get_features(registry, project, features, allow_cache=True)
    views, odfvs = utils._get_feature_views_to_use(registry, project, features)
    # As Feast does: on-demand views are recomputed, never read from the online store, offline.
    odfvs = copy.deepcopy(odfvs)
    for odfv in odfvs:
        odfv.write_to_online_store = False
    grouped, grouped_odfvs = utils._group_feature_refs(requested, views, odfvs)
    refs = list(requested)
    seen = set(refs)
    for view, names in grouped:
        for name in names:
            ref = f"{view.projection.name_to_use()}:{name}"
            if ref not in seen:
                refs.append(ref)
                seen.add(ref)
    return HistoricalRequest(
        requested_refs=requested,
        feature_views=[view for view, _ in grouped],
        feature_refs=refs,
        on_demand_feature_views=[view for view, _ in grouped_odfvs],
    )


def validate_feature_refs(feature_refs: List[str], full_feature_names: bool) -> None:
    """Raise Feast's ``FeatureNameCollisionError`` when two refs give the same output column.
    ``utils._validate_feature_refs``."""
    utils._validate_feature_refs(feature_refs, full_feature_names)


# --- online serving: Feast's request preparation and response building ----------------------


class OnlineRequest(NamedTuple):
    """``utils._prepare_entities_to_read_from_online_store``'s result, named."""

    join_key_values: Dict[str, List[Any]]
    grouped_refs: List[Tuple[Any, List[str]]]
    entity_name_to_join_key_map: Dict[str, str]
    on_demand_feature_views: List[Any]
    feature_refs: List[str]
    result_names: Set[str]
    response: Any  # GetOnlineFeaturesResponse, filled in place


def online_views_to_use(
    registry: Any, project: str, features: Union[List[str], FeatureService]
) -> Tuple[List[Any], List[Any]]:
    """The feature views and on-demand views an online request for ``features`` reads, as Feast's
    feature server resolves them to check permissions (cached registry, placeholder entity kept).
    ``utils._get_feature_views_to_use``."""
    views, on_demand_views = utils._get_feature_views_to_use(
        registry, project, features, allow_cache=True, hide_dummy_entity=False
    )
    return list(views), list(on_demand_views)


def prepare_online_request(
    registry: Any,
    project: str,
    features: Union[List[str], FeatureService],
    entity_values: Mapping[str, Any],
    full_feature_names: bool,
) -> OnlineRequest:
    """Resolve an online request as Feast's ``OnlineStore.get_online_features`` does: the views and
    features to read, entity keys per join key, and the response to fill.
    ``utils._prepare_entities_to_read_from_online_store``."""
    return OnlineRequest(
        *utils._prepare_entities_to_read_from_online_store(
            registry=registry,
            project=project,
            features=features,
            entity_values=entity_values,
            full_feature_names=full_feature_names,
            native_entity_values=True,
        )
    )


def unique_entities(
    table: Any, join_key_values: Dict[str, List[Any]], entity_name_to_join_key_map: Dict[str, str]
) -> Tuple[Tuple[Dict[str, Any], ...], Tuple[List[int], ...], int]:
    """A view's distinct entity keys, the request rows each one fills, and the row count.
    ``utils._get_unique_entities``."""
    return utils._get_unique_entities(table, join_key_values, entity_name_to_join_key_map)


def feature_types(grouped_refs: List[Tuple[Any, List[str]]]) -> Dict[str, ValueType]:
    """Requested feature name (bare and ``view__feature``) -> value type, for ``OnlineResponse``.
    ``OnlineStore._build_feature_types``."""
    return OnlineStore._build_feature_types(grouped_refs)


def apply_on_demand_transforms(
    response: Any,
    feature_refs: List[str],
    on_demand_feature_views: List[Any],
    full_feature_names: bool,
    types: Dict[str, ValueType],
) -> None:
    """Compute on-demand views into ``response`` (in place), as Feast's online path does.
    ``utils._augment_response_with_on_demand_transforms``."""
    utils._augment_response_with_on_demand_transforms(
        response, feature_refs, on_demand_feature_views, full_feature_names, feature_types=types
    )


def drop_unneeded_columns(response: Any, kept: Set[str]) -> None:
    """Remove from ``response`` every column not in ``kept`` (request data, on-demand inputs).
    ``utils._drop_unneeded_columns``."""
    utils._drop_unneeded_columns(response, kept)


# --- the online read path of regular views (online/store.py), Feast's own way ------------------


def versioned_view_name(table: Any, config: Any) -> str:
    """The name a regular view's values are stored under in Redis. ``redis._versioned_fv_name``."""
    return str(_versioned_fv_name(table, config))


def entity_key_protos(values: Any) -> List[Any]:
    """``EntityKey`` protos of unique entity rows. ``utils._get_entity_key_protos``."""
    return list(utils._get_entity_key_protos(values))


def populate_response(
    names: List[str],
    rows: Any,
    indexes: Any,
    response: Any,
    full_feature_names: bool,
    table: Any,
    output_len: int,
    include_version_metadata: bool,
) -> None:
    """Feast's filling of an online response from one regular view's rows.
    ``utils._populate_response_from_feature_data``."""
    utils._populate_response_from_feature_data(
        names, rows, indexes, response, full_feature_names, table, output_len, include_version_metadata
    )


def request_grouped_refs(
    registry: Any, project: str, features: Any, full_feature_names: bool
) -> Tuple[Dict[str, str], List[Tuple[Any, List[str]]]]:
    """The entity name -> join key map and the (view, features) groups of an online request, from
    Feast's cached request context. ``utils._get_cached_request_context``."""
    context = utils._get_cached_request_context(registry, project, features, full_feature_names)
    return context[2], context[5]


def redis_keys_for_entities(store: RedisOnlineStore, config: Any, entity_keys: List[Any]) -> List[bytes]:
    """Feast's Redis keys of regular views' entities. ``RedisOnlineStore._generate_redis_keys_for_entities``."""
    return list(store._generate_redis_keys_for_entities(config, entity_keys))


def hset_keys_for_features(
    store: RedisOnlineStore, table: Any, features: List[str], view_name: str
) -> Tuple[List[str], List[Any]]:
    """The hash fields of a regular view's features (and its timestamp); ``features`` is extended by
    Feast, so pass a copy. ``RedisOnlineStore._generate_hset_keys_for_features``."""
    names, keys = store._generate_hset_keys_for_features(table, features, fv_name_override=view_name)
    return names, keys


def regular_rows(store: RedisOnlineStore, replies: List[Any], view_name: str, names: List[str]) -> Any:
    """Feast's decoding of HMGET replies of a regular view. ``RedisOnlineStore._convert_redis_values_to_protobuf``."""
    return store._convert_redis_values_to_protobuf(replies, view_name, names)
