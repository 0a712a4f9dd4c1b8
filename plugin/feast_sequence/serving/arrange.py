"""Arrange stage: the order of each row's events and the derived per-event age, as models take them.

Every stage before this one sees each row newest first (as stored); this stage runs last on the
events, online and for training alike, so filters, sizing and joins never depend on the order asked.
"""

from __future__ import annotations

import numpy as np
from feast.value_type import ValueType

from feast_sequence.serving.batch import SequenceBatch


def with_age(batch: SequenceBatch, name: str, event_seconds: np.ndarray, request_seconds: np.ndarray) -> SequenceBatch:
    """The batch with ``name``: whole seconds from each event to its row's request time.

    ``event_seconds`` is per event (flat), ``request_seconds`` per row. An event newer than its
    request (a clock ahead of the server's) gets a negative age rather than a made-up zero.
    """
    ages = np.repeat(np.asarray(request_seconds, dtype=np.int64), batch.lengths) - np.asarray(
        event_seconds, dtype=np.int64
    )
    return batch.with_column(name, ages, ValueType.INT64)


def oldest_first(batch: SequenceBatch) -> SequenceBatch:
    """Each row's events reversed (stored newest first, so this gives time order)."""
    total = int(batch.lengths.sum())
    if total == 0:
        return batch
    starts = batch.offsets()[:-1]
    row = batch.row_of_event()
    rank = np.arange(total) - starts[row]
    order = starts[row] + batch.lengths[row] - 1 - rank
    return SequenceBatch(batch.lengths, {n: c[order] for n, c in batch.columns.items()}, dict(batch.types))
