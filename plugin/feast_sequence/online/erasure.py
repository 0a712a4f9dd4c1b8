"""Erasing entities from the online store: markers recorded offline first, then every sequence view's
keys erased in Redis in batches, atomically per entity (storage/erasure.py); and markers re-applied
from the offline copy to a Redis that lost them. docs/privacy.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from feast.repo_config import RepoConfig

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import SequenceInputError
from feast_sequence.offline.erasures import ErasureMarker, append_markers, read_markers, typed_value
from feast_sequence.storage.client import redis_client
from feast_sequence.storage.conversion import datetime_to_us
from feast_sequence.storage.drivers import drive
from feast_sequence.storage.erasure import EVERY_VIEW, EntityErasure, ErasedCounts, erase_entities
from feast_sequence.storage.redis_io import replica_acks, retry_policy, run_round_trip

#: Entities per pair of round trips: big enough to amortize them, small enough to show progress.
ENTITIES_PER_BATCH = 500


@dataclass(frozen=True)
class ErasureRequest:
    """What to erase, checked: the entities, the sequence views they are erased from (None: every
    view, later ones included), and the time up to which (inclusive)."""

    entities: Tuple[Mapping[str, Any], ...]
    views: Optional[Tuple[str, ...]]
    before: datetime
    made_at: datetime

    def markers(self) -> List[ErasureMarker]:
        return [ErasureMarker(dict(e), self.views, self.before, self.made_at) for e in self.entities]


def erasure_request(
    sequence_views: Sequence[SequenceSettings],
    entities: Sequence[Mapping[str, Any]],
    views: Sequence[str] = (),
    before: Optional[datetime] = None,
) -> ErasureRequest:
    """Check what was asked against the repository's sequence views; raises ``SequenceInputError``
    naming the unknown view or the entity whose join keys no view has."""
    known = {s.view_name: s for s in sequence_views}
    unknown = [v for v in views if v not in known]
    if unknown:
        raise SequenceInputError(f"No sequence view named {unknown}; the sequence views are {sorted(known)}.")
    chosen = [known[v] for v in views] if views else list(known.values())
    types = {frozenset(name for name, _ in s.join_keys): dict(s.join_keys) for s in reversed(chosen)}
    typed = []
    for entity in entities:
        if not isinstance(entity, Mapping) or frozenset(entity) not in types:
            raise SequenceInputError(
                f"Entity {entity!r}: give a mapping of the join keys of a sequence view: "
                f"{sorted(sorted(k) for k in types)}."
            )
        # Values of the first view's join key types (a CLI gives text), checked before anything is written.
        key_types = types[frozenset(entity)]
        typed.append({name: typed_value(entity, name, key_types[name]) for name in sorted(entity)})
    if before is not None and before.tzinfo is None:
        raise SequenceInputError(f"before={before.isoformat()} has no time zone; give one (e.g. +00:00).")
    made_at = datetime.now(timezone.utc)
    return ErasureRequest(tuple(typed), tuple(views) if views else None, before or made_at, made_at)


def erase_online(
    config: RepoConfig,
    sequence_views: Sequence[SequenceSettings],
    request: ErasureRequest,
    on_erased: Optional[Callable[[int], Any]] = None,
) -> ErasedCounts:
    """Record the markers offline (durably, first), then erase the entities from Redis in batches
    of ``ENTITIES_PER_BATCH``, telling ``on_erased`` after each. Safe to run again."""
    markers = request.markers()
    append_markers(config, markers)
    return apply_markers(config, sequence_views, markers, on_erased)


def reapply_erasures(config: RepoConfig, sequence_views: Sequence[SequenceSettings]) -> ErasedCounts:
    """Apply every marker of the offline copy to Redis again: a no-op where Redis still has them
    (a marker only moves later), and after a restart without persistence or a restore from an older
    snapshot, the markers and the erase are back before any writer runs."""
    return apply_markers(config, sequence_views, read_markers(config))


def apply_markers(
    config: RepoConfig,
    sequence_views: Sequence[SequenceSettings],
    markers: Sequence[ErasureMarker],
    on_erased: Optional[Callable[[int], Any]] = None,
) -> ErasedCounts:
    """Erase each marker's entity from the views it applies to, and record the marker in Redis."""
    total = ErasedCounts()
    if not markers:
        return total
    online = config.online_store
    run = partial(run_round_trip, redis_client(online))
    groups: Dict[Tuple[Optional[Tuple[str, ...]], datetime], List[ErasureMarker]] = {}
    for marker in markers:  # one ERASE shape per (views, time): usually the whole call is one group
        groups.setdefault((marker.views, marker.before), []).append(marker)
    for (views, before), group in groups.items():
        fields = list(views) if views is not None else [EVERY_VIEW]
        for start in range(0, len(group), ENTITIES_PER_BATCH):
            markers_batch = group[start : start + ENTITIES_PER_BATCH]
            batch = [e for m in markers_batch for e in _entity_erasures(m, sequence_views)]
            operation = erase_entities(
                config.project, batch, fields, datetime_to_us(before), retry_policy(online), replica_acks(online)
            )
            counts = drive(operation, run)
            total.entities += counts.entities
            total.tail_events += counts.tail_events
            total.block_events += counts.block_events
            if on_erased is not None:
                on_erased(len(markers_batch))
    return total


def _entity_erasures(marker: ErasureMarker, sequence_views: Sequence[SequenceSettings]) -> List[EntityErasure]:
    """The marker's entity and the views it applies to, one erasure per distinct key bytes (views
    whose join keys have the same names but other types store the entity under other bytes)."""
    by_key: Dict[bytes, List[SequenceSettings]] = {}
    for settings in sequence_views:
        if marker.applies_to(settings):
            by_key.setdefault(marker.entity_key(settings), []).append(settings)
    return [EntityErasure(key, tuple(views)) for key, views in by_key.items()]
