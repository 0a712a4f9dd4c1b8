"""View-wide work on sequence views, outside the request path: `feast apply` (definitions, TTL
changes, deletions), `feast teardown`, and the `feast-sequence compact` job.

These scan a view's keys with a synchronous client; none of it runs per request.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from feast import FeatureView
from feast.repo_config import RepoConfig

from feast_sequence.definitions.settings import SequenceSettings, sequence_settings
from feast_sequence.errors import SequenceConfigurationError
from feast_sequence.storage.client import refuse_eviction
from feast_sequence.storage.compaction import compact, rewrite
from feast_sequence.storage.drivers import drive
from feast_sequence.storage.evolution import StoredDefinition, evolve, widens
from feast_sequence.storage.keys import (
    SequenceKeys,
    definitions_key,
    sequence_keys_of,
    view_scan_pattern,
    writing_keys,
    zset_key_of,
)
from feast_sequence.storage.redis_io import (
    Access,
    Command,
    evalsha,
    execute,
    replica_acks,
    retry_policy,
    run_round_trip,
)
from feast_sequence.storage.scripts import EXPIRE

PROVIDER_PATH = "feast_sequence.SequenceProvider"


def check_provider(config: RepoConfig, sequences: Sequence[FeatureView], from_sequence_provider: bool) -> None:
    """Sequence views need the sequence provider: it turns pushed rows into events.
    ``from_sequence_provider``: whether the store applying them was made by that provider."""
    if sequences and not from_sequence_provider:
        raise SequenceConfigurationError(
            f"Sequence view(s) {[t.name for t in sequences]} need "
            f"'provider: {PROVIDER_PATH}' in feature_store.yaml (found {config.provider!r}); "
            "it turns pushed rows into events."
        )


def apply_views(client: Any, config: RepoConfig, keep: Sequence[FeatureView], delete: Sequence[FeatureView]) -> None:
    """`feast apply` of sequence views: delete the removed ones, record the kept ones' definitions.

    Every view is checked against what is stored before anything is changed: a refused view aborts
    the whole apply (Feast commits the registry only after the store's ``update`` returns).
    """
    refuse_eviction(client)
    changes = _definition_changes(client, config, [sequence_settings(t) for t in keep])
    for table in delete:
        delete_view(client, config, table.name)
    for settings, previous, record in changes:
        if previous is not None and previous.ttl_us != record.ttl_us:
            expire_view(client, config, settings)  # a scan of the view's keys: only on change
        if previous is not None and not previous.encodes_like(record):
            reencode_view(client, config, settings)  # every stored event: only when fields change
        _run_writes(
            client,
            [("HSET", definitions_key(config.project), settings.view_name, record.to_json())],
            config.online_store,
            f"recording the definition of sequence view '{settings.view_name}'",
        )


def stored_definitions(client: Any, config: RepoConfig) -> Dict[str, StoredDefinition]:
    """Every sequence view of the project that Redis holds a definition record for."""
    raw = execute(
        client,
        [("HGETALL", definitions_key(config.project))],
        "reading the stored definitions of sequence views",
        retry_policy(config.online_store),
    )[0]
    return {name.decode(): StoredDefinition.from_json(text) for name, text in raw.items()}


def delete_view(client: Any, config: RepoConfig, view_name: str) -> int:
    """Delete every key of one sequence view in this project, and its stored definition; returns
    how many sequence keys were deleted."""
    deleted = sum(
        sum(_run_writes(client, [("UNLINK", k) for k in batch], config.online_store, "deleting a sequence view"))
        for batch in scan_batches(client, view_scan_pattern(config.project, view_name))
    )
    _run_writes(
        client,
        [("HDEL", definitions_key(config.project), view_name)],
        config.online_store,
        "deleting a sequence view",
    )
    return deleted


def expire_view(client: Any, config: RepoConfig, settings: SequenceSettings) -> int:
    """Set every stored sequence of a view to expire under its current TTL (none: never), as the
    next write would; returns how many sequences were updated. Run by `feast apply` when the TTL
    changes (only narrowing over stored sequences: docs/concepts.md, "Definition changes")."""
    args = (settings.ttl_us or 0, "1" if settings.dedup_by else "0")
    updated = 0
    for sequences in _sequence_batches(client, config, settings, 1000):
        commands = [evalsha(EXPIRE, writing_keys(keys), args) for keys in sequences]
        updated += len(_run_writes(client, commands, config.online_store, _expiring(settings)))
    return updated


def compact_view(client: Any, config: RepoConfig, settings: SequenceSettings, batch: int = 200) -> int:
    """Compact every stored sequence of a view whose tail holds events; returns how many were
    compacted. Safe beside writers, readers and other compactors: each sequence is replaced by
    compare-and-set (storage/compaction.py). Also converts sequences written before blocks existed
    (storage format 2) in place."""
    online = config.online_store
    return sum(
        drive(compact(settings, sequences, retry_policy(online), replica_acks(online)), partial(run_round_trip, client))
        for sequences in _sequence_batches(client, config, settings, batch)
    )


def reencode_view(client: Any, config: RepoConfig, settings: SequenceSettings, batch: int = 200) -> int:
    """Re-encode every stored event of a view under its current fields (storage/compaction.rewrite),
    as `feast apply` does when they change; returns how many sequences were rewritten."""
    online = config.online_store
    return sum(
        drive(rewrite(settings, sequences, retry_policy(online), replica_acks(online)), partial(run_round_trip, client))
        for sequences in _sequence_batches(client, config, settings, batch)
    )


def _definition_changes(
    client: Any, config: RepoConfig, views: Sequence[SequenceSettings]
) -> List[Tuple[SequenceSettings, Optional[StoredDefinition], StoredDefinition]]:
    """Per view: its stored definition (None if none) and the new one; raises on a refused change."""
    if not views:
        return []
    replies = execute(
        client,
        [("HMGET", definitions_key(config.project), *[s.view_name for s in views])],
        "reading the stored definitions of sequence views",
        retry_policy(config.online_store),
    )[0]
    changes = []
    now_us = time.time_ns() // 1000
    for settings, raw in zip(views, replies):
        previous = StoredDefinition.from_json(raw) if raw is not None else None
        # A scan, but only for a change that widens the window, and it stops at the first key.
        holds = bool(widens(previous, settings)) and _holds_sequences(client, config, settings.view_name)
        changes.append((settings, previous, evolve(previous, settings, now_us, holds)))
    return changes


def _holds_sequences(client: Any, config: RepoConfig, view_name: str) -> bool:
    """Whether any sequence of the view is stored."""
    keys = client.scan_iter(match=view_scan_pattern(config.project, view_name), count=1000)
    return next(iter(keys), None) is not None


def _sequence_batches(
    client: Any, config: RepoConfig, settings: SequenceSettings, size: int
) -> Iterator[List[SequenceKeys]]:
    """The keys of every stored sequence of a view, a batch of scanned keys at a time."""
    for keys in scan_batches(client, view_scan_pattern(config.project, settings.view_name), size):
        yield [sequence_keys_of(z) for z in sorted({zset_key_of(k) for k in keys})]


def scan_batches(client: Any, pattern: bytes, size: int = 1000) -> Iterator[List[bytes]]:
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


def _expiring(settings: SequenceSettings) -> str:
    return f"applying the TTL of sequence view '{settings.view_name}' to its stored sequences"
