"""Sequence views in Feast's client/server layout (docs/deployment.md): `feast-sequence serve` with
Feast's OIDC auth and permissions (tests/secured_repo.py), clients whose ``online_store`` is
``type: remote``. Tokens come from a local OIDC provider (tests/oidc_provider.py), so Feast's own
token parsing and permission decisions run unchanged. One server for the module."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pandas as pd
import pytest
from feast import FeatureStore
from feast.data_source import PushMode
from feast.errors import FeastPermissionError
from feast.permissions.security_manager import SecurityManager, no_security_manager, set_security_manager
from feast.permissions.user import User

import feast_sequence
from feast_sequence import feast_internals
from feast_sequence.definitions.settings import is_sequence_view, sequence_settings
from feast_sequence.errors import SequenceConfigurationError, SequenceInputError
from feast_sequence.testing.local_redis import free_port

import serving_repo
from conftest import sequence_key_count
from feast_server import feast_sequence_serve, feast_serve_registry, module_repo
from oidc_provider import OidcProvider
from redis_state import clear, everything
from repos import REGISTRY, sequence_online, update_config, write_repo

PROJECT = "secured"
NOW = pd.Timestamp.now(tz="UTC").floor("s")
SEQUENCE_FEATURES = ["clicks:item_id", "clicks:kind", "clicks:n", "clicks:ts", "clicks_indexed:item_id"]
USERS = 3  # the "recent" use case serves at most 3 users per request


@dataclass(frozen=True)
class Server:
    repo: Path
    port: int
    oidc: OidcProvider

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_server) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("secured") / "repo"
    env = module_repo(repo, "secured_repo", PROJECT, sequence_online(redis_server.connection_string))
    with OidcProvider() as oidc:
        update_config(repo, [], {"auth": oidc.server_auth()})
        with feast_sequence_serve(repo, env=env, log=repo.parent / "server.log") as port:
            yield Server(repo, port, oidc)


@pytest.fixture
def redis(redis_server):
    """The server's Redis without stored values (the record of applied definitions kept)."""
    client = redis_server.client()
    clear(client)
    return client


@pytest.fixture
def local(server: Server) -> FeatureStore:
    """The server's own repository, used in this process without a security manager (as Feast's CLI is)."""
    return FeatureStore(repo_path=str(server.repo))


def remote(server: Server, path: Path, *roles: str) -> FeatureStore:
    """A client of ``server`` (``online_store: type: remote``, the server's registry) whose token has ``roles``."""
    write_repo(
        path / "_".join(roles or ("nobody",)),
        PROJECT,
        {"type": "remote", "path": server.url},
        registry=str(server.repo / REGISTRY),
        extra={"auth": {"type": "oidc", "token": server.oidc.token("caller", list(roles))}},
    )
    return FeatureStore(repo_path=str(path / "_".join(roles or ("nobody",))))


def http_status(server: Server, path: str, body: Dict[str, Any], *roles: str) -> int:
    """POST ``body`` to ``path`` with a token that has ``roles``; the status answered."""
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {server.oidc.token('caller', list(roles))}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        print(error.code, error.read()[:500])  # shown when a test fails
        return error.code


def clicks(seed: int = 1) -> pd.DataFrame:
    """Clicks of the last 20 days (all inside the use cases' 30-day window, whenever the test runs)."""
    frame = serving_repo.clicks(60, USERS, NOW, seed)
    frame["ts"] = frame["ts"].clip(lower=NOW - pd.Timedelta(days=20))
    return frame


def push_body(frame: pd.DataFrame, to: str = "online") -> Dict[str, Any]:
    columns = {c: frame[c].tolist() for c in frame.columns}
    columns["ts"] = [t.isoformat(timespec="microseconds") for t in frame["ts"]]
    return {"push_source_name": "clicks_push", "df": columns, "to": to}


def read(store: FeatureStore, features: Any) -> Dict[str, List[Any]]:
    rows = [{"user_id": user} for user in range(USERS)]
    return store.get_online_features(features=features, entity_rows=rows, full_feature_names=True).to_dict()


def as_json_values(columns: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
    """``columns`` with timestamps (alone or in lists) as the epoch seconds Feast's server sends."""

    def plain(value: Any) -> Any:
        if isinstance(value, list):
            return [plain(v) for v in value]
        return int(value.timestamp()) if isinstance(value, datetime) else value

    return {name: plain(values) for name, values in columns.items()}


# --- remote clients: reads and pushes -------------------------------------------------------------


def test_a_remote_client_reads_sequences_and_use_cases_as_a_local_store_does(server, redis, local, tmp_path):
    feast_sequence.push(local, "items_push", serving_repo.item_rows(40, NOW - pd.Timedelta(days=30)))
    feast_sequence.push(local, "clicks_push", clicks())
    client = remote(server, tmp_path, "reader")
    for features in (SEQUENCE_FEATURES, "recent", "ranking_serving", "ranking"):
        wanted = local.get_feature_service(features) if isinstance(features, str) else features
        # Feast's remote client rebuilds values from JSON, where a timestamp is epoch seconds.
        assert read(client, wanted) == as_json_values(read(local, wanted)), features


def test_a_remote_clients_push_writes_what_a_local_push_writes(server, redis, local, tmp_path):
    frames = [clicks(seed) for seed in (2, 3)]
    for frame in frames:
        feast_sequence.push(local, "clicks_push", frame)
    feast_internals.store_provider(local).online_store.drain_compactions(timeout_seconds=30)
    # Compacted blocks carry a write id, and which keys a sequence has (tail, block, levels) depends
    # on when its compactions ran, so the sequences written and what is served are compared.
    keys, served = _sequences(redis), read(local, SEQUENCE_FEATURES)
    assert sequence_key_count(redis) > 0
    client = remote(server, tmp_path, "writer")
    clear(redis)
    feast_sequence.push(client, "clicks_push", frames[0])
    asyncio.run(feast_sequence.push_async(client, "clicks_push", frames[1]))
    assert (_sequences(redis), read(local, SEQUENCE_FEATURES)) == (keys, served)


def _sequences(redis) -> List[bytes]:
    """Each stored key without its part suffix (``:z``, ``:c``, ``:l`` ...): the sequences stored."""
    return sorted({key.rsplit(b":", 1)[0] for key in everything(redis)})


def test_a_remote_clients_bad_push_fails_as_a_local_one_and_writes_nothing(server, redis, local, tmp_path):
    bad = clicks().assign(n=2**40)  # n is an Int32 field
    with pytest.raises(SequenceInputError) as local_error:
        feast_sequence.push(local, "clicks_push", bad)
    with pytest.raises(SequenceInputError) as remote_error:
        feast_sequence.push(remote(server, tmp_path, "writer"), "clicks_push", bad)
    assert str(remote_error.value) == str(local_error.value)
    assert sequence_key_count(redis) == 0


def test_store_push_from_a_remote_client_fails_at_once_naming_the_push_that_works(server, redis, tmp_path):
    client = remote(server, tmp_path, "writer")
    with pytest.raises(SequenceConfigurationError, match=r"feast_sequence.push\(store, 'clicks_push', df\)"):
        client.push("clicks_push", clicks())
    with pytest.raises(SequenceConfigurationError, match="type: remote"):
        asyncio.run(client.push_async("clicks_push", clicks()))
    assert sequence_key_count(redis) == 0


# --- permissions: pushes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "roles, to",
    [
        ((), "online"),
        (("reader",), "online"),
        (("clicks_writer",), "online"),  # may write clicks, not clicks_indexed (the same source feeds both)
        (("writer",), "offline"),  # WRITE_ONLINE only
        (("writer",), "online_and_offline"),
        (("offline_writer",), "online_and_offline"),
    ],
)
def test_push_is_refused_403_without_permission_on_every_view_and_writes_nothing(server, redis, roles, to):
    offline_file = server.repo / "data" / "clicks.parquet"
    offline_rows = len(pd.read_parquet(offline_file))
    assert http_status(server, "/push", push_body(clicks(), to), *roles) == 403
    assert sequence_key_count(redis) == 0
    assert len(pd.read_parquet(offline_file)) == offline_rows


def test_push_with_write_online_on_every_view_is_written(server, redis):
    assert http_status(server, "/push", push_body(clicks()), "writer") == 200
    assert http_status(server, "/push", push_body(clicks()), "clicks_writer", "writer") == 200
    assert sequence_key_count(redis) > 0


def test_a_remote_clients_push_without_permission_is_refused_with_feasts_error(server, redis, tmp_path):
    client = remote(server, tmp_path, "clicks_writer")
    with pytest.raises(FeastPermissionError, match="clicks_indexed"):
        feast_sequence.push(client, "clicks_push", clicks())
    with pytest.raises(FeastPermissionError, match="clicks_indexed"):
        asyncio.run(feast_sequence.push_async(client, "clicks_push", clicks()))
    assert sequence_key_count(redis) == 0


@pytest.fixture
def caller(local):
    """``caller(roles)``: this process checks permissions as a server does (Feast's security manager),
    for a caller with ``roles``."""
    manager = SecurityManager(project=PROJECT, registry=local.registry)
    set_security_manager(manager)

    def with_roles(*roles: str) -> None:
        manager.set_current_user(User(username="caller", roles=list(roles)))

    yield with_roles
    no_security_manager()


def test_the_fast_push_in_a_server_process_checks_every_views_permission_first(redis, local, caller):
    caller("clicks_writer")
    with pytest.raises(FeastPermissionError, match="clicks_indexed"):
        feast_sequence.push(local, "clicks_push", clicks())
    with pytest.raises(FeastPermissionError, match="clicks_indexed"):
        asyncio.run(feast_sequence.push_async(local, "clicks_push", clicks()))
    caller("writer")
    with pytest.raises(FeastPermissionError, match="WRITE_OFFLINE"):
        feast_sequence.push(local, "clicks_push", clicks(), to=PushMode.ONLINE_AND_OFFLINE)
    assert sequence_key_count(redis) == 0
    feast_sequence.push(local, "clicks_push", clicks())
    assert sequence_key_count(redis) > 0


# --- permissions: reads --------------------------------------------------------------------------------


def test_a_read_is_refused_403_without_read_online_on_every_view_it_reads(server, redis):
    entities = {"user_id": list(range(USERS))}
    plain = {"features": ["clicks:item_id"], "entities": entities}
    assert http_status(server, "/get-online-features", plain) == 403
    assert http_status(server, "/get-online-features", plain, "writer") == 403
    assert http_status(server, "/get-online-features", plain, "sequence_reader") == 200
    for service, sequence_reader_status in [("recent", 200), ("ranking_serving", 403), ("ranking", 403)]:
        use_case = {"feature_service": service, "entities": entities}
        assert http_status(server, "/get-online-features", use_case, "reader") == 200, service
        # the ranking use cases join items for enrichment: sequence_reader may not read items
        assert http_status(server, "/get-online-features", use_case, "sequence_reader") == sequence_reader_status


def test_a_remote_client_without_read_permission_gets_feasts_error(server, redis, local, tmp_path):
    feast_sequence.push(local, "clicks_push", clicks())  # every user has events (see docs/deployment.md)
    client = remote(server, tmp_path, "sequence_reader")
    with pytest.raises(FeastPermissionError, match="items"):
        read(client, local.get_feature_service("ranking_serving"))
    assert read(client, local.get_feature_service("recent"))["user_id"] == list(range(USERS))


def test_a_use_case_read_in_a_server_process_checks_the_views_it_joins(redis, local, caller):
    caller("sequence_reader")
    with pytest.raises(FeastPermissionError, match="items"):
        read(local, local.get_feature_service("ranking_serving"))
    with pytest.raises(FeastPermissionError, match="items"):
        asyncio.run(
            local.get_online_features_async(
                features=local.get_feature_service("ranking_serving"), entity_rows=[{"user_id": 0}]
            )
        )
    caller("reader")
    assert read(local, local.get_feature_service("ranking_serving"))["user_id"] == list(range(USERS))


# --- the remote registry and the offline server ---------------------------------------------------


def test_feast_apply_through_a_remote_registry_keeps_sequence_definitions_and_field_numbers(redis_server, tmp_path):
    """A client repository whose registry is `feast serve_registry` (Feast's gRPC registry server)
    applies serving_repo's definitions to a new project. Without auth: Feast 0.67's registry server
    with auth on a file registry drops applied objects (docs/deployment.md)."""
    served_repo, client_repo, project = tmp_path / "registry", tmp_path / "client", "remote_applied"
    online = sequence_online(redis_server.connection_string)
    env = module_repo(served_repo, "serving_repo", "registry_base", online)
    with feast_serve_registry(served_repo, env=env) as port:
        remote_registry = {"registry_type": "remote", "path": f"127.0.0.1:{port}"}
        module_repo(client_repo, "serving_repo", project, online, registry=remote_registry)
        client = FeatureStore(repo_path=str(client_repo))
        through_server = {v.name: sequence_settings(v) for v in client.list_feature_views() if is_sequence_view(v)}
    defined = {v.name: sequence_settings(v) for v in serving_repo.objects(tmp_path / "data") if is_sequence_view(v)}
    assert through_server == defined and set(defined) == {"clicks", "clicks_indexed"}
    in_file = FeatureStore(repo_path=str(served_repo)).registry.list_feature_views(project, allow_cache=False)
    assert {v.name: sequence_settings(v) for v in in_file if is_sequence_view(v)} == defined
    # The record of what stored events are written with (field numbers), made at apply.
    stored = feast_internals.store_provider(client).online_store.stored_definitions(client.config)
    for name, settings in defined.items():
        numbers = {field: number for field, (number, _) in stored[name].fields.items()}
        assert numbers == {f.name: f.stored_number for f in settings.fields}, name


# --- the offline server ---


def test_training_data_through_feasts_offline_server_is_refused_naming_the_supported_path(server, tmp_path):
    """Feast's offline server runs its own point-in-time join, which cannot build sequences; a client
    whose ``offline_store`` is ``type: remote`` is refused before it sends anything."""
    repo = write_repo(
        tmp_path / "client",
        PROJECT,
        {"type": "remote", "path": server.url},
        offline={"type": "remote", "host": "127.0.0.1", "port": free_port()},  # nothing listens there
        registry=str(server.repo / REGISTRY),
        extra={"auth": {"type": "oidc", "token": server.oidc.token("caller", ["reader"])}},
    )
    client = FeatureStore(repo_path=str(repo))
    entities = pd.DataFrame({"user_id": [0], "event_timestamp": [NOW]})
    with pytest.raises(SequenceConfigurationError, match="server's feature_store.yaml"):
        client.get_historical_features(entity_df=entities, features=["clicks:item_id", "clicks:n"]).to_df()
    with pytest.raises(SequenceConfigurationError, match="serve_offline"):
        feast_sequence.get_training_data(client, entities, client.get_feature_service("recent")).to_df()
