"""Every private Feast symbol feast-sequence relies on (feast_sequence/feast_internals.py), one test
each, so that a Feast upgrade that moves or changes one fails here, by name. And the public import
paths users write in feature_store.yaml and repositories."""

from __future__ import annotations

import inspect

import mmh3
import pandas as pd
import pytest
import redis
from feast import FeatureView, Field
from feast.errors import FeatureNameCollisionError
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Array, Float32
from feast.value_type import ValueType

from feast_sequence import feast_internals
from feast_sequence.online.provider import SequenceProvider
from feast_sequence.online.store import SequenceRedisOnlineStoreConfig

import serving_repo
from serving_repo import serving_store


def test_parse_connection_string_gives_nodes_and_typed_params():
    nodes, params = feast_internals.parse_connection_string("h1:6379,h2:7000,db=2,ssl=true,socket_timeout=0.5")
    assert nodes == [{"host": "h1", "port": "6379"}, {"host": "h2", "port": "7000"}]
    assert params == {"db": 2, "ssl": True, "socket_timeout": 0.5}


def test_feast_redis_client_builds_a_working_client(redis_server):
    config = SequenceRedisOnlineStoreConfig(connection_string=redis_server.connection_string)
    client = feast_internals.feast_redis_client(config)
    assert isinstance(client, redis.Redis)
    assert client.ping() is True


def test_redis_field_hash_is_murmur3_little_endian():
    assert feast_internals.redis_field_hash("items:title") == mmh3.hash("items:title", signed=False).to_bytes(
        4, "little"
    )


@pytest.fixture
def applied(tmp_path, redis_server, redis_client):
    """The serving repository applied (sequence views, a regular view, an on-demand view, use cases)."""
    store = serving_store(tmp_path / "repo", redis_server, "internals")
    store.apply(serving_repo.objects(tmp_path / "repo" / "data"))
    return store


def test_store_provider_is_the_configured_provider_built_once(applied):
    provider = feast_internals.store_provider(applied)
    assert isinstance(provider, SequenceProvider)
    assert feast_internals.store_provider(applied) is provider


def test_rows_for_ingestion_converts_a_regular_view_and_rejects_bad_values(applied):
    provider = feast_internals.store_provider(applied)
    items = applied.get_feature_view("items")
    frame = serving_repo.item_rows(3, pd.Timestamp("2024-01-01", tz="UTC"))
    rows = feast_internals.rows_for_ingestion(provider, items, frame, None)
    assert len(rows) == 2
    entity_key, values, event_ts, _ = rows[0]
    assert list(entity_key.join_keys) == ["item_id"] and entity_key.entity_values[0].string_val == "i0"
    assert values["title"].string_val == "title i0" and values["cost"].double_val == 0.0
    assert event_ts.year == 2024
    # Feast checks value types with an assert, hence AssertionError.
    with pytest.raises(AssertionError, match="Type `<class 'str'>` not in"):
        feast_internals.rows_for_ingestion(provider, items, frame.assign(cost=["x", "y"]), None)


def test_historical_request_is_what_feast_hands_the_provider(applied):
    ranking = applied.get_feature_service("ranking")
    request = feast_internals.historical_request(applied.registry, applied.project, ranking)
    requested = ["clicks:item_id", "clicks:kind", "clicks:n", "clicks:ts"]
    assert request.requested_refs == requested + ["click_summary:clicked_cost", "click_summary:clicks_seen"]
    assert request.feature_refs == request.requested_refs  # the on-demand view reads clicks:n, requested
    assert [v.name for v in request.feature_views] == ["clicks"]
    assert [(o.name, o.write_to_online_store) for o in request.on_demand_feature_views] == [("click_summary", False)]
    only_odfv = feast_internals.historical_request(applied.registry, applied.project, ["click_summary:clicks_seen"])
    assert only_odfv.requested_refs == ["click_summary:clicks_seen"]
    assert only_odfv.feature_refs == ["click_summary:clicks_seen", "clicks:n"]  # its input, added


def test_online_views_to_use_are_the_views_and_on_demand_views_a_request_reads(applied):
    views, on_demand = feast_internals.online_views_to_use(
        applied.registry, applied.project, ["items:title", "click_summary:clicks_seen"]
    )
    assert ([v.name for v in views], [o.name for o in on_demand]) == (["items", "clicks"], ["click_summary"])
    ranking = applied.get_feature_service("ranking")
    views, on_demand = feast_internals.online_views_to_use(applied.registry, applied.project, ranking)
    assert ([v.name for v in views], [o.name for o in on_demand]) == (["clicks"], ["click_summary"])


def test_validate_feature_refs_refuses_colliding_names():
    refs = ["clicks:item_id", "clicks_indexed:item_id"]
    with pytest.raises(FeatureNameCollisionError):
        feast_internals.validate_feature_refs(refs, full_feature_names=False)
    feast_internals.validate_feature_refs(refs, full_feature_names=True)


def _online_request(store, features):
    return feast_internals.prepare_online_request(
        store.registry, store.project, features, {"user_id": [0, 1, 0]}, False
    )


def test_prepare_online_request_groups_refs_by_view(applied):
    request = _online_request(applied, ["clicks:item_id", "items:title", "click_summary:clicks_seen"])
    assert [(view.name, sorted(names)) for view, names in request.grouped_refs] == [
        ("clicks", ["item_id", "n"]),
        ("items", ["title"]),
    ]
    assert [o.name for o in request.on_demand_feature_views] == ["click_summary"]
    assert request.feature_refs == ["clicks:item_id", "items:title", "click_summary:clicks_seen"]
    assert set(request.result_names) == {"user_id", "item_id", "title", "clicks_seen"}
    assert list(request.response.metadata.feature_names.val) == ["user_id"]
    assert request.entity_name_to_join_key_map["user"] == "user_id"
    assert len(request.join_key_values["user_id"]) == 3


def test_unique_entities_dedupes_rows(applied):
    request = _online_request(applied, ["clicks:item_id"])
    ((table, _),) = request.grouped_refs
    values, idxs, output_len = feast_internals.unique_entities(
        table, request.join_key_values, request.entity_name_to_join_key_map
    )
    assert output_len == 3
    assert [v["user_id"].int64_val for v in values] == [0, 1]
    assert [list(i) for i in idxs] == [[0, 2], [1]]


def test_feature_types_names_bare_and_full(applied):
    request = _online_request(applied, ["clicks:n", "items:cost"])
    types = feast_internals.feature_types(request.grouped_refs)
    assert types["n"] == types["clicks__n"] == ValueType.INT32_LIST
    assert types["cost"] == types["items__cost"] == ValueType.DOUBLE


def test_on_demand_transforms_then_unneeded_columns_dropped(applied):
    request = _online_request(applied, ["click_summary:clicks_seen"])
    response = request.response
    response.metadata.feature_names.val.append("n")  # the on-demand view's input, as a store fills it
    vector = response.results.add()
    for n in ([1, 2], [], [3]):
        value = ValueProto()
        value.int32_list_val.val.extend(n)
        value.int32_list_val.SetInParent()
        vector.values.append(value)
        vector.statuses.append(FieldStatus.PRESENT)
        vector.event_timestamps.add()
    types = feast_internals.feature_types(request.grouped_refs)
    feast_internals.apply_on_demand_transforms(
        response, request.feature_refs, request.on_demand_feature_views, False, types
    )
    names = list(response.metadata.feature_names.val)
    assert [v.int64_val for v in response.results[names.index("clicks_seen")].values] == [2, 0, 1]
    feast_internals.drop_unneeded_columns(response, set(request.result_names))
    assert list(response.metadata.feature_names.val) == ["user_id", "clicks_seen"]


def test_the_public_paths_keep_working():
    import feast_sequence
    import feast_sequence.online_store as public_store
    from feast_sequence.online.provider import SequenceProvider
    from feast_sequence.online.store import SequenceRedisOnlineStore

    assert public_store.SequenceRedisOnlineStore is SequenceRedisOnlineStore
    assert public_store.SequenceRedisOnlineStoreConfig is SequenceRedisOnlineStoreConfig
    assert feast_sequence.SequenceProvider is SequenceProvider
    # Feast finds the store class through its config class's module, and the config class in the
    # module of the store's dotted path (the YAML's `type:`).
    assert SequenceRedisOnlineStoreConfig.__module__ == SequenceRedisOnlineStore.__module__
    from feast.repo_config import get_online_config_from_type

    import feast_sequence.online.store as store_module

    assert store_module.SequenceRedisOnlineStoreConfig is SequenceRedisOnlineStoreConfig
    for module in ("feast_sequence.online_store", "feast_sequence.online.store"):
        assert get_online_config_from_type(f"{module}.SequenceRedisOnlineStore") is SequenceRedisOnlineStoreConfig


def test_the_store_overrides_feasts_hooks_that_read_a_requests_views():
    from feast_sequence.online.store import SequenceRedisOnlineStore

    for hook in (feast_internals.read_features_per_view, feast_internals.read_features_per_view_async):
        # get_online_features(_async) calls the hook by this name; the store's version reads every view at once.
        assert hook.__name__ in ("_read_features_per_fv", "_read_features_per_fv_async")
        assert getattr(SequenceRedisOnlineStore, hook.__name__) is not hook


def test_the_regular_view_read_path_reads_feast_written_values(make_store, tmp_path):
    """versioned_view_name, entity_key_protos, redis_keys_for_entities, hset_keys_for_features,
    regular_rows, populate_response and request_grouped_refs, through a regular view's read."""
    import pandas as pd

    from sample_repo import objects

    store = make_store(objects(tmp_path / "events"))
    store.push(
        "profile_push",
        pd.DataFrame({"user_id": [7], "scores": [[1, 2, 3]], "ts": [pd.Timestamp.now(tz="UTC")]}),
    )
    online = feast_internals.store_provider(store).online_store
    table = store.get_feature_view("profile")
    name = feast_internals.versioned_view_name(table, store.config)
    assert name == "profile"
    mapping, groups = feast_internals.request_grouped_refs(store.registry, store.project, ["profile:scores"], False)
    assert mapping["user"] == "user_id" and [(t.name, f) for t, f in groups] == [("profile", ["scores"])]
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    keys = feast_internals.entity_key_protos([{"user_id": ValueProto(int64_val=7)}])
    redis_keys = feast_internals.redis_keys_for_entities(online, store.config, keys)
    names, fields = feast_internals.hset_keys_for_features(online, table, ["scores"], name)
    client = online._get_client(store.config.online_store)
    rows = feast_internals.regular_rows(online, [client.hmget(redis_keys[0], fields)], name, names)
    assert list(rows[0][1]["scores"].int64_list_val.val) == [1, 2, 3]
    assert store.get_online_features(features=["profile:scores"], entity_rows=[{"user_id": 7}]).to_dict()["scores"] == [
        [1, 2, 3]
    ]


def test_validate_vector_features_refuses_a_vector_of_the_wrong_length(applied):
    view = FeatureView(
        name="embeddings",
        entities=[],
        source=applied.get_feature_view("items").batch_source,
        schema=[Field(name="vec", dtype=Array(Float32), vector_index=True, vector_length=3)],
    )
    feast_internals.validate_vector_features(applied, view, pd.DataFrame({"vec": [[1.0, 2.0, 3.0]]}))
    with pytest.raises(ValueError, match="Vector length 2 does not match expected 3"):
        feast_internals.validate_vector_features(applied, view, pd.DataFrame({"vec": [[1.0, 2.0]]}))


def test_current_registry_proto_is_the_cached_proto_until_a_refresh(applied):
    registry, project = applied.registry, applied.project
    proto = feast_internals.current_registry_proto(registry, project, allow_cache=True)
    assert feast_internals.current_registry_proto(registry, project, allow_cache=True) is proto
    assert any(v.spec.name == "items" for v in proto.feature_views)
    applied.refresh_registry()
    refreshed = feast_internals.current_registry_proto(registry, project, allow_cache=True)
    assert refreshed is not proto and refreshed == proto
    assert feast_internals.current_registry_proto(registry, project, allow_cache=False) is not refreshed


def test_gunicorn_metrics_hooks_are_feasts_worker_hooks():
    post_worker_init, child_exit = feast_internals.gunicorn_metrics_hooks()
    assert list(inspect.signature(post_worker_init).parameters) == ["store", "worker"]
    assert list(inspect.signature(child_exit).parameters) == ["server", "worker"]
