"""Planning sequence reads and decoding their replies into Feast rows: pure logic."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import CorruptSequenceError, SequenceDefinitionError, SequenceRequestError
from feast_sequence.storage import integrity
from feast_sequence.storage.codec import EventLayout, decode_plan, decode_sequence, layout_for
from feast_sequence.storage.compaction import CORRUPT, Served, served
from feast_sequence.storage.entity_keys import entity_key_bytes_from_values
from feast_sequence.storage.keys import SequenceKeys, read_keys, sequence_keys, sequence_keys_of, view_prefix
from feast_sequence.storage.redis_io import Command, evalsha
from feast_sequence.storage.scripts import READ

Row = Tuple[Optional[datetime], Optional[Dict[str, ValueProto]]]


@dataclass(frozen=True)
class SequenceRead:
    """What to read for one view and how to decode it: requested features and their field index."""

    settings: SequenceSettings
    layout: EventLayout
    requested_names: List[str]
    plan: Tuple[Tuple[str, str, str], ...]  # see codec.decode_plan


def plan_read(settings: SequenceSettings, requested_features: Optional[Sequence[str]]) -> SequenceRead:
    index = {name: i for i, name in enumerate(settings.field_names)}
    index[settings.timestamp_field] = -1
    names = list(requested_features) if requested_features else list(settings.served_names)
    unknown = [n for n in names if n not in index]
    if unknown:
        raise SequenceDefinitionError(
            f"Sequence view '{settings.view_name}' has no feature(s) {unknown}; "
            f"it serves {list(settings.served_names)}."
        )
    layout = layout_for(settings)
    return SequenceRead(settings, layout, names, decode_plan(layout, [(n, index[n]) for n in names]))


def check_entity_limit(view_name: str, entities: int, limit: int) -> None:
    """The store-wide ``max_entities_per_request``, for plain reads and use cases alike."""
    if entities > limit:
        raise SequenceRequestError(
            f"Request for {entities:,} entities of sequence view '{view_name}' exceeds "
            f"max_entities_per_request={limit:,}; split it or raise the limit."
        )


def read_commands(
    settings: SequenceSettings,
    project: str,
    entity_rows: Sequence[Mapping[str, ValueProto]],
    now_us: Optional[int] = None,
    limit: Optional[int] = None,
    key_cache: Optional[Dict[Tuple[int, ...], bytes]] = None,
    window_us: Optional[int] = None,
) -> List[Command]:
    """One READ script call per entity: its newest ``limit`` (default max_length) unexpired events,
    and with ``window_us`` only those at most that old (``members`` turns a reply into them).

    ``entity_rows`` are Feast's unique entities of the request, ``{join key: ValueProto}`` each.
    ``key_cache`` maps the identities of a row's value objects to its key bytes; share one per
    request only (object ids are reused once objects die).
    """
    oldest: object = oldest_kept_us(settings, now_us, window_us)
    count = limit or settings.max_length
    prefix = view_prefix(project, settings.view_name)
    encoded = key_cache if key_cache is not None else {}
    commands: List[Command] = []
    for row in entity_rows:
        # Views of one request share Feast's entity value objects: encode each entity once.
        identity = tuple(map(id, row.values()))
        entity_key = encoded.get(identity)
        if entity_key is None:
            entity_key = encoded[identity] = entity_key_bytes_from_values(row)
        commands.append(read_command(sequence_keys(prefix, entity_key), oldest, count))
    return commands


def read_command(keys: SequenceKeys, oldest: object, count: int) -> Command:
    """One sequence's READ script call: its newest ``count`` events at or after ``oldest`` ("-inf":
    all), from its tail, its block and its levels. Every reader builds its calls here (serving, the
    validation suite), so a key the script gains reaches them all."""
    return evalsha(READ, read_keys(keys), (oldest, count))


def stored_reads(settings: SequenceSettings, zset_keys: Sequence[bytes]) -> List[Command]:
    """Whole stored sequences by their sorted-set keys, as serving reads them but with expired
    events too (up to max_length): what the validation suite checks (``members`` decodes them)."""
    return [read_command(sequence_keys_of(key), "-inf", settings.max_length) for key in zset_keys]


def oldest_kept_us(settings: SequenceSettings, now_us: Optional[int], window_us: Optional[int] = None) -> object:
    """The oldest event time a read returns: events at or after it (TTL, then a use case's window)."""
    bounds = [b for b in (settings.ttl_us, window_us) if b]
    if not bounds:
        return "-inf"
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    return now_us - min(bounds)


def members(
    settings: SequenceSettings,
    commands: Sequence[Command],
    replies: Sequence[Any],
    fail_closed: bool = False,
) -> List[Served]:
    """Each entity's served events (stored members, newest first) from the replies of ``read_commands``.

    An entity whose stored sequence is corrupt (its block fails its checksum or does not decode) is
    served without events (``Served.corrupt``), counted and logged, so one damaged entity does not
    fail the others of the request; with ``fail_closed`` it raises ``CorruptSequenceError`` instead.
    Either way the error names the view, the entity and the Redis key."""
    fields = len(layout_for(settings).dedup_positions)
    out: List[Served] = []
    for command, reply in zip(commands, replies):
        try:
            out.append(served(reply, fields))
        except CorruptSequenceError as error:
            named = integrity.corrupt(settings, command[5], error)  # the block key (evalsha's KEYS[3])
            if fail_closed:
                integrity.count(named, "read")
                raise named from error
            integrity.report(named, "read", "It is served without events.")
            out.append(CORRUPT)
    return out


def decode_rows(read: SequenceRead, commands: Sequence[Command], replies: Sequence[Any]) -> List[Row]:
    """One Feast row per entity. An entity without events gets empty lists, not NOT_FOUND; a corrupt
    one (see ``members``) gets no row (NOT_FOUND)."""
    return [
        (None, None) if m.corrupt else decode_sequence(read.layout, m.members(), read.plan)
        for m in members(read.settings, commands, replies)
    ]


def add_view_metadata(response: Any, table: Any, include_version_metadata: bool) -> None:
    """Feast's per-view version metadata, when the request asks for it."""
    if include_version_metadata:
        clean = table.projection.name_alias or table.projection.name
        if clean not in [m.name for m in response.metadata.feature_view_metadata]:
            entry = response.metadata.feature_view_metadata.add()
            entry.name = clean
            entry.version = getattr(table, "current_version_number", 0) or 0
