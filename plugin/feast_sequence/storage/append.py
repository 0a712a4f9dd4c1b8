"""Turning pushed rows into events and planning the Redis commands that append them: pure logic."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

import pandas as pd
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import SequenceInputError
from feast_sequence.storage.codec import NULL_DEFAULTS, EncodedEvents, encode_columns, layout_for
from feast_sequence.storage.conversion import (
    EVENT_TIME_RANGE,
    MAX_EVENT_US,
    MIN_EVENT_US,
    column_values,
    datetime_to_us,
    timestamps_to_us,
)
from feast_sequence.storage.entity_keys import entity_column_bytes, entity_key_bytes_from_proto
from feast_sequence.storage.keys import SequenceKeys, erasure_key_of, sequence_keys, view_prefix, writing_keys
from feast_sequence.storage.redis_io import Command, evalsha
from feast_sequence.storage.scripts import APPEND

#: APPEND's block mode for the events of a correction, and its reply when it refused them.
REFUSE_BESIDE_BLOCK, REFUSED = "refuse", -1

#: Events per script call. Each call is atomic and blocks Redis while it runs, so a huge batch for
#: one entity is split to keep other clients' latency low.
EVENTS_PER_CALL = 1000


#: Size limits that protect Redis and the readers from oversized input.
MAX_EVENT_BYTES = 64 * 1024  # one stored event; a read returns up to max_length of them
MAX_EVENTS_PER_BATCH = 1_000_000  # one push (split bigger loads; backfills write in batches)


def encode_frame(settings: SequenceSettings, df: pd.DataFrame) -> EncodedEvents:
    """Validate and encode pushed rows (one event each). Raises ``SequenceInputError`` on bad input."""
    if len(df) > MAX_EVENTS_PER_BATCH:
        raise SequenceInputError(
            f"Sequence view '{settings.view_name}': a batch of {len(df):,} events exceeds the limit of "
            f"{MAX_EVENTS_PER_BATCH:,}; split it into several pushes. Nothing was written."
        )
    required = [k for k, _ in settings.join_keys] + [settings.timestamp_field] + list(settings.field_names)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SequenceInputError(
            f"Sequence view '{settings.view_name}': pushed data lacks column(s) {missing}; "
            f"it needs {required}. The batch was rejected; nothing was written."
        )
    entity_keys = entity_column_bytes(settings.join_keys, df)
    timestamps_us = timestamps_to_us(settings.timestamp_field, df[settings.timestamp_field]).tolist()
    columns = [column_values(f.name, f.value_type, df[f.name]) for f in settings.fields]
    members, identities = encode_columns(layout_for(settings), columns, timestamps_us)
    check_sizes(settings, members)
    return EncodedEvents(entity_keys, timestamps_us, members, identities)


def check_sizes(settings: SequenceSettings, members: Sequence[bytes]) -> None:
    for row, member in enumerate(members):
        if len(member) > MAX_EVENT_BYTES:
            raise SequenceInputError(
                f"Sequence view '{settings.view_name}': row {row} encodes to {len(member):,} bytes, over "
                f"the limit of {MAX_EVENT_BYTES:,} per event. The batch was rejected; nothing was written."
            )


def encode_proto_rows(
    settings: SequenceSettings,
    rows: Sequence[Tuple[EntityKeyProto, Dict[str, ValueProto], datetime, Optional[datetime]]],
) -> EncodedEvents:
    """Encode rows in Feast's ``online_write_batch`` shape: one event per row, scalar values."""
    columns: List[List[Any]] = [[] for _ in settings.fields]
    entity_keys, timestamps_us = [], []
    for position, (key, values, event_ts, _) in enumerate(rows):
        entity_keys.append(entity_key_bytes_from_proto(key))
        if event_ts is None:
            raise SequenceInputError(
                f"Sequence view '{settings.view_name}': row {position} has no event timestamp. "
                "The batch was rejected; nothing was written."
            )
        event_us = datetime_to_us(event_ts)
        if not MIN_EVENT_US <= event_us <= MAX_EVENT_US:
            raise SequenceInputError(
                f"Sequence view '{settings.view_name}': row {position} has event timestamp "
                f"{event_ts.isoformat()}, outside {EVENT_TIME_RANGE}. The batch was rejected; nothing "
                "was written."
            )
        timestamps_us.append(event_us)
        for column, field in zip(columns, settings.fields):
            proto = values.get(field.name)
            kind = proto.WhichOneof("val") if proto is not None else None
            if kind is not None and kind.endswith(("_list_val", "_set_val")):
                raise SequenceInputError(
                    f"Sequence view '{settings.view_name}': row {position}, field {field.name!r} "
                    f"holds a {kind}; each row must be one event with scalar values. Push raw "
                    "events (provider: feast_sequence.SequenceProvider converts them)."
                )
            value = feast_value_type_to_python_type(proto) if proto is not None and kind is not None else None
            column.append(NULL_DEFAULTS[field.value_type] if value is None else _scalar(field, value))
    members, identities = encode_columns(layout_for(settings), columns, timestamps_us)
    check_sizes(settings, members)
    return EncodedEvents(entity_keys, timestamps_us, members, identities)


def _scalar(field: Any, value: Any) -> Any:
    if isinstance(value, datetime):  # UnixTimestamp fields come back as datetimes
        return int(value.timestamp())
    return value


def plan_append(
    settings: SequenceSettings,
    project: str,
    events: EncodedEvents,
    replace_range_us: Optional[Tuple[int, int]] = None,
    replaced: Optional[Set[bytes]] = None,
) -> List[Command]:
    """One atomic script call per entity (per EVENTS_PER_CALL events), all in one pipeline.

    With ``replace_range_us`` each entity's stored events in that (inclusive) range are removed in
    the same atomic call as its first chunk, so readers never see the range half rewritten;
    ``replaced`` remembers the entities already done across calls.
    """
    by_entity: Dict[bytes, List[int]] = {}
    for position, key in enumerate(events.entity_keys):
        by_entity.setdefault(key, []).append(position)
    prefix = view_prefix(project, settings.view_name)
    commands: List[Command] = []
    scores, members, identities = events.scores_us, events.members, events.identities
    for entity_key, positions in by_entity.items():
        keys = append_keys(sequence_keys(prefix, entity_key))
        for start in range(0, len(positions), EVENTS_PER_CALL):
            chunk = positions[start : start + EVENTS_PER_CALL]
            first = start == 0 and (replaced is None or entity_key not in replaced)
            # A correction's events must not land beside a block (scripts.APPEND; compaction.resend_refused).
            mode = REFUSE_BESIDE_BLOCK if replace_range_us is not None else ""
            args: List[Any] = append_header(settings, replace_range_us if first else None, mode)
            if identities is None:
                for i in chunk:
                    args += (scores[i], members[i])
            else:
                for i in chunk:
                    args += (scores[i], members[i], identities[i])
            commands.append(evalsha(APPEND, keys, args))
        if replaced is not None:
            replaced.add(entity_key)
    return commands


def tails_to_compact(
    settings: SequenceSettings,
    commands: Sequence[Command],
    sizes: Sequence[Any],
    compact_after: int,
    below: Optional[int] = None,
) -> List[SequenceKeys]:
    """The sequences of ``plan_append``'s commands whose tails reached ``compact_after`` events, or
    ``max_length`` when it is smaller (APPEND returns the tail's size; 0 = never compact on write);
    with ``below``, only those whose tails stayed under it in every call of the commands."""
    if not compact_after:
        return []
    threshold = min(compact_after, settings.max_length)
    # EVALSHA, sha, number of keys, then the sequence's keys
    full = {(c[3], c[4], c[5]) for c, reply in zip(commands, sizes) if tail_size(reply) >= threshold}
    if below is not None:
        full -= {(c[3], c[4], c[5]) for c, reply in zip(commands, sizes) if tail_size(reply) >= below}
    return sorted(full)


def append_keys(keys: SequenceKeys) -> Tuple[bytes, ...]:
    """APPEND's keys: a writing script's (the sequence's and its version key), then its entity's
    erasure marker (scripts.APPEND)."""
    return (*writing_keys(keys), erasure_key_of(keys[0]))


def tail_size(reply: Any) -> int:
    """The tail's size from an APPEND reply ({size, dropped}, or a negative refusal code)."""
    return int(reply[0]) if isinstance(reply, list) else int(reply)


def erased_dropped(replies: Sequence[Any]) -> int:
    """Events APPEND calls dropped because their entity was erased up to their time (scripts.APPEND)."""
    return sum(int(r[1]) for r in replies if isinstance(r, list))


def plan_remove_range(settings: SequenceSettings, keys: SequenceKeys, range_us: Tuple[int, int]) -> Command:
    """Remove one sequence's events in a time range (a correction for an entity the source lacks)."""
    return evalsha(APPEND, append_keys(keys), append_header(settings, range_us, REFUSE_BESIDE_BLOCK))


def append_header(
    settings: SequenceSettings, range_us: Optional[Tuple[int, int]], block_mode: Union[str, bytes]
) -> List[Any]:
    """APPEND's arguments before the events: the view's rules, the range to replace, and the block
    mode ('' a plain append, REFUSE_BESIDE_BLOCK a correction's events, or the header of a block
    to move back into the tail: compaction.absorb_command), and the view's name (its erasure marker)."""
    return [
        settings.max_length,
        settings.ttl_us or 0,
        len(settings.dedup_by),
        range_us[0] if range_us else "",
        range_us[1] if range_us else "",
        block_mode,
        settings.view_name,
    ]
