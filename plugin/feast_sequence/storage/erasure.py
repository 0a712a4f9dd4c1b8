"""Erasing entities' events from Redis up to a time and recording their erasure markers, planned
without I/O: a generator of round trips that the sync or async driver runs (storage/drivers.py).

One ``ERASE`` script call per entity covers every view of it (their keys share the entity's hash
tag), so an entity is erased from all its views at once or not at all, and a writer racing the
erase either lands before it (and is erased) or after it (and meets the marker). docs/privacy.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, List, Sequence, Tuple, Union

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import SequenceStoreError
from feast_sequence.storage import blocks, levels
from feast_sequence.storage.keys import erasure_key, sequence_keys, view_prefix, writing_keys
from feast_sequence.storage.redis_io import Access, Command, ReplicaAcks, RetryPolicy, RoundTrip, evalsha
from feast_sequence.storage.scripts import ERASE

#: The marker field of an erasure that applies to every view of the entity, present and future.
EVERY_VIEW = "*"

#: ERASE's reply when a block changed between the read and the script: nothing was written.
BLOCK_CHANGED = -1


@dataclass(frozen=True)
class EntityErasure:
    """One entity to erase (its key bytes) from the views whose join keys it matches."""

    entity_key: bytes
    views: Tuple[SequenceSettings, ...]


@dataclass
class ErasedCounts:
    """What an erase removed from Redis: entities erased, and events from tails and from blocks."""

    entities: int = 0
    tail_events: int = 0
    block_events: int = 0

    @property
    def events(self) -> int:
        return self.tail_events + self.block_events


def erase_entities(
    project: str,
    erasures: Sequence[EntityErasure],
    marker_fields: Sequence[str],
    before_us: int,
    retry: RetryPolicy,
    acks: ReplicaAcks,
    attempts: int = 10,
) -> Generator[RoundTrip, List[Any], ErasedCounts]:
    """Erase each entity's events at or before ``before_us`` from its views and set its marker
    fields (view names, or ``EVERY_VIEW``) to at least ``before_us``; two round trips per attempt.
    Entities whose block a compaction replaced meanwhile are read and erased again."""
    counts = ErasedCounts()
    pending = list(erasures)
    for _ in range(attempts):
        if not pending:
            return counts
        reads = levels.stored_commands([_keys(project, e.entity_key, s) for e in pending for s in e.views])
        stored = iter(levels.stored_blocks((yield RoundTrip(reads, _what("reading", len(pending)), retry))))
        planned = [plan_erase(project, e, [next(stored) for _ in e.views], marker_fields, before_us) for e in pending]
        commands = [command for command, _ in planned]
        replies = yield RoundTrip(commands, _what("erasing", len(commands)), retry, acks, Access.WRITE)
        again = []
        for erasure, (_, from_blocks), reply in zip(pending, planned, replies):
            if reply == BLOCK_CHANGED:
                again.append(erasure)
                continue
            counts.entities += 1
            counts.tail_events += int(reply)
            counts.block_events += from_blocks
        pending = again
    if pending:
        raise SequenceStoreError(
            f"Erasing {len(pending)} entities kept meeting freshly compacted blocks after {attempts} attempts; "
            "nothing of theirs was half erased. Run the erase again (it is safe to repeat)."
        )
    return counts


def plan_erase(
    project: str,
    erasure: EntityErasure,
    stored: Sequence[levels.Stored],
    marker_fields: Sequence[str],
    before_us: int,
) -> Tuple[Command, int]:
    """One entity's ERASE call given its views' stored blocks, and how many block events it removes."""
    keys: List[bytes] = [erasure_key(project, erasure.entity_key)]
    args: List[Any] = [before_us, len(marker_fields), *marker_fields]
    removed = 0
    for settings, views_blocks in zip(erasure.views, stored):
        keys += writing_keys(_keys(project, erasure.entity_key, settings))  # version keys: ERASE is a mutation
        action, count = block_after_erase(views_blocks, settings.max_length, before_us)
        args += (len(settings.dedup_by), views_blocks.signature(), action)
        removed += count
    return evalsha(ERASE, keys, args), removed


def block_after_erase(stored: levels.Stored, max_length: int, before_us: int) -> Tuple[Union[str, bytes], int]:
    """What ERASE does with a sequence's blocks (base and levels): 'keep' them, 'delete' them, or
    replace them by one base block of their merged events after ``before_us``; and how many stored
    events at or before ``before_us`` that removes."""
    parts = [blocks.decode_events(b) for b in stored.parts()]
    erased = sum(1 for part in parts for score in part.scores if score <= before_us)
    if not erased:
        return "keep", 0
    merged = levels.merged(parts, max_length)
    kept = sum(1 for score in merged.scores if score > before_us)  # newest first
    if kept == 0:
        return "delete", erased
    later = blocks.Events(merged.scores[:kept], merged.members[:kept], merged.identity_lengths[:kept])
    return blocks.encode(later), erased


def _keys(project: str, entity_key: bytes, settings: SequenceSettings) -> Tuple[bytes, bytes, bytes]:
    return sequence_keys(view_prefix(project, settings.view_name), entity_key)


def _what(doing: str, count: int) -> str:
    return f"{doing} {count} entities to erase"
