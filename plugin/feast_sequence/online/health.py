"""Health check: does every Redis the feature repository's online store uses answer?

Feast's ``/health`` endpoint only checks that the registry can be read, so a feature server whose
Redis is gone still reports healthy. ``feast-sequence health --repo feature_repo`` (exit 0 healthy,
1 not; feast_sequence/cli/online.py) is meant for a Kubernetes exec readiness probe next to ``feast serve``.
"""

from __future__ import annotations

import time

from feast import FeatureStore

from feast_sequence.definitions.settings import is_sequence_view
from feast_sequence.errors import SequenceConfigurationError, SequenceStoreError
from feast_sequence.feast_internals import store_provider
from feast_sequence.online.store import SequenceRedisOnlineStore
from feast_sequence.storage.client import redis_client
from feast_sequence.storage.redis_io import execute


def check(store: FeatureStore) -> float:
    """PING the online store's Redis and check it still holds what was applied; returns the PING's
    round trip in milliseconds.

    Raises ``SequenceStoreUnavailableError`` (or ``SequenceStoreError``) when it does not answer,
    and ``SequenceStoreError`` when it lost its data: ``feast apply`` records every sequence view's
    definition in Redis, so a registry view without that record means Redis restarted without
    persistence, was flushed, or is another server. Reads would silently serve empty sequences.
    """
    online = store_provider(store).online_store
    if not isinstance(online, SequenceRedisOnlineStore):
        raise SequenceConfigurationError(
            f"The online store is {type(online).__name__}, not feast-sequence's Redis store."
        )
    client = redis_client(store.config.online_store)
    start = time.perf_counter()
    execute(client, [("PING",)], "checking Redis health")
    millis = (time.perf_counter() - start) * 1000
    online.check_eviction_policy(store.config)
    applied = sorted(v.name for v in store.list_feature_views() if is_sequence_view(v))
    recorded = online.stored_definitions(store.config)
    lost = [name for name in applied if name not in recorded]
    if lost:
        raise SequenceStoreError(
            f"Redis has no record of sequence view(s) {lost} that the registry defines: it lost its "
            "data (a restart without persistence, a FLUSHALL, or a different server). Reads serve "
            "empty sequences. Backfill the views (feast-sequence backfill), then run `feast apply`, "
            "which records them again; see docs/reliability.md."
        )
    return millis
