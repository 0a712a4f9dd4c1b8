"""Retrieve stage: read each row's stored sequence of one view and decode it into a ``SequenceBatch``.

One read per entity (see ``feast_sequence.storage.read``) returns the newest events within the
TTL and the use case's time window; without filters, the count is also capped at the use case's
length (by Redis for a sequence's tail). A format 5 block's events are read from its columns
(storage/sequence_columns.py); all other stored events (tails, older blocks) of all entities with
one protobuf parse of their concatenation.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.definitions.use_case import SequenceSpec
from feast_sequence.serving.batch import SequenceBatch
from feast_sequence.storage.codec import layout_for
from feast_sequence.storage.read import members as read_members
from feast_sequence.storage.read import read_commands
from feast_sequence.storage.redis_io import Command
from feast_sequence.storage.sequence_columns import TIMESTAMPS, fields_of


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
    index = {f.name: i for i, f in enumerate(settings.fields)}
    names = [settings.timestamp_field, *(n for n in dict.fromkeys(fields) if n != settings.timestamp_field)]
    columns = fields_of(layout, sequences, [TIMESTAMPS, *(index[n] for n in names[1:])])
    types = [ValueType.UNIX_TIMESTAMP, *(settings.fields[index[n]].value_type for n in names[1:])]
    return SequenceBatch(lengths, dict(zip(names, columns)), dict(zip(names, types)))


def newest_seconds(batch: SequenceBatch, timestamp_field: str) -> np.ndarray:
    """Each non-empty row's newest event time (whole seconds)."""
    starts = batch.offsets()[:-1][batch.lengths > 0]
    newest: np.ndarray = batch.columns[timestamp_field][starts]
    return newest
