"""Retrieve stage: read each row's stored sequence of one view and decode it into a ``SequenceBatch``.

One read per entity (see ``feast_sequence.storage.read``) returns the newest events within the
TTL and the use case's time window; without filters, the count is also capped at the use case's
length (by Redis for a sequence's tail). All entities' events are decoded with one
protobuf parse of their concatenation.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.definitions.use_case import SequenceSpec
from feast_sequence.serving.batch import SequenceBatch, as_array
from feast_sequence.storage.codec import column_per_event, layout_for
from feast_sequence.storage.read import members as read_members
from feast_sequence.storage.read import read_commands
from feast_sequence.storage.redis_io import Command


def retrieve_commands(
    settings: SequenceSettings,
    spec: SequenceSpec,
    project: str,
    rows: Sequence[Mapping[str, ValueProto]],
    now_us: int,
    key_cache: Dict[Tuple[int, ...], bytes],
) -> List[Command]:
    limit = spec.length if not spec.where else None  # filters need the whole sequence to choose from
    return read_commands(settings, project, rows, now_us, limit=limit, key_cache=key_cache, window_us=spec.window_us)


def decode_batch(
    settings: SequenceSettings,
    commands: Sequence[Command],
    replies: Sequence[Any],
    fields: Sequence[str],
    fail_closed: bool = False,
) -> SequenceBatch:
    """The named event fields of every row's sequence, plus the timestamp field (whole seconds). A
    corrupt stored sequence is served without events unless ``fail_closed`` (storage/read.members)."""
    layout = layout_for(settings)
    sequences = read_members(settings, commands, replies, fail_closed)
    lengths = np.fromiter((s.count for s in sequences), dtype=np.int64, count=len(sequences))
    message = layout.message_class.FromString(b"".join(s.data for s in sequences))
    events = int(lengths.sum())
    batch = SequenceBatch(lengths)
    batch = batch.with_column(settings.timestamp_field, as_array(message.ts, ValueType.INT64), ValueType.UNIX_TIMESTAMP)
    index = {f.name: i for i, f in enumerate(settings.fields)}
    for name in fields:
        if name == settings.timestamp_field:
            continue
        source = f"f{index[name] + 1}"
        column = getattr(message, source)
        if len(column) != events:  # events stored before this field was added to the schema
            column = column_per_event(layout, [m for s in sequences for m in s.members()], source)
        value_type = settings.fields[index[name]].value_type
        batch = batch.with_column(name, as_array(column, value_type), value_type)
    return batch


def newest_seconds(batch: SequenceBatch, timestamp_field: str) -> np.ndarray:
    """Each non-empty row's newest event time (whole seconds)."""
    starts = batch.offsets()[:-1][batch.lengths > 0]
    newest: np.ndarray = batch.columns[timestamp_field][starts]
    return newest
