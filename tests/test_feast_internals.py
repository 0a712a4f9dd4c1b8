"""Every private Feast symbol feast-sequence relies on (feast_sequence/feast_internals.py), one test
each, so that a Feast upgrade that moves or changes one fails here, by name. And the public import
paths users write in feature_store.yaml and repositories."""

from __future__ import annotations

import redis

from feast_sequence import feast_internals
from feast_sequence.online.store import SequenceRedisOnlineStoreConfig


def test_parse_connection_string_gives_nodes_and_typed_params():
    nodes, params = feast_internals.parse_connection_string("h1:6379,h2:7000,db=2,ssl=true,socket_timeout=0.5")
    assert nodes == [{"host": "h1", "port": "6379"}, {"host": "h2", "port": "7000"}]
    assert params == {"db": 2, "ssl": True, "socket_timeout": 0.5}


def test_feast_redis_client_builds_a_working_client(redis_server):
    config = SequenceRedisOnlineStoreConfig(connection_string=redis_server.connection_string)
    client = feast_internals.feast_redis_client(config)
    assert isinstance(client, redis.Redis)
    assert client.ping() is True


def test_the_public_paths_keep_working():
    import feast_sequence
    import feast_sequence.online_store as public_store
    from feast_sequence.online.provider import SequenceProvider
    from feast_sequence.online.store import SequenceRedisOnlineStore

    assert public_store.SequenceRedisOnlineStore is SequenceRedisOnlineStore
    assert public_store.SequenceRedisOnlineStoreConfig is SequenceRedisOnlineStoreConfig
    assert feast_sequence.SequenceProvider is SequenceProvider
    # Feast finds the store class through its config class's module.
    assert SequenceRedisOnlineStoreConfig.__module__ == SequenceRedisOnlineStore.__module__
