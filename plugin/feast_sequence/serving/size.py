"""Size stage: keep each row's newest ``length`` events (after filtering)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from feast_sequence.serving.batch import SequenceBatch


def first_n(batch: SequenceBatch, length: Optional[int]) -> SequenceBatch:
    if length is None or not (batch.lengths > length).any():
        return batch
    rank = np.arange(int(batch.lengths.sum())) - np.repeat(batch.offsets()[:-1], batch.lengths)
    return batch.select(rank < length)
