"""Planning sequence reads and decoding their replies into Feast rows: pure logic."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feast_sequence._codec import (
    EventLayout,
    decode_plan,
    decode_sequence,
    entity_key_bytes_from_values,
    layout_for,
)
from feast_sequence._keys import sequence_keys, view_prefix
from feast_sequence._redis_io import Command
from feast_sequence._settings import SequenceSettings
from feast_sequence.errors import SequenceDefinitionError

Row = Tuple[Optional[datetime], Optional[Dict[str, ValueProto]]]


@dataclass(frozen=True)
class SequenceRead:
    """What to read for one view and how to decode it: requested features and their field index."""

    layout: EventLayout
    requested_names: List[str]
    plan: Tuple[Tuple[str, str, str], ...]  # see _codec.decode_plan


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
    return SequenceRead(layout, names, decode_plan(layout, [(n, index[n]) for n in names]))


def read_commands(
    settings: SequenceSettings,
    project: str,
    entity_rows: Sequence[Mapping[str, ValueProto]],
    now_us: Optional[int] = None,
    limit: Optional[int] = None,
    key_cache: Optional[Dict[Tuple[int, ...], bytes]] = None,
) -> List[Command]:
    """One ZREVRANGEBYSCORE per entity: its newest ``limit`` (default max_length) unexpired events.

    ``entity_rows`` are Feast's unique entities of the request, ``{join key: ValueProto}`` each.
    ``key_cache`` maps the identities of a row's value objects to its key bytes; share one per
    request only (object ids are reused once objects die).
    """
    if settings.ttl_seconds:
        now_us = now_us if now_us is not None else time.time_ns() // 1000
        oldest: object = now_us - settings.ttl_seconds * 1_000_000
    else:
        oldest = "-inf"
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
        commands.append(
            ("ZREVRANGEBYSCORE", sequence_keys(prefix, entity_key)[0], "+inf", oldest, "LIMIT", 0, count)
        )
    return commands


def decode_rows(read: SequenceRead, replies: Sequence[List[bytes]]) -> List[Row]:
    """One Feast row per entity. An entity without events gets empty lists, not NOT_FOUND."""
    return [decode_sequence(read.layout, members, read.plan) for members in replies]
