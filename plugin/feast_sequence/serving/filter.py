"""Filter stage: keep the events that satisfy every condition of a use case (``Where``)."""

from __future__ import annotations

import operator
from typing import Sequence, Set

import numpy as np

from feast_sequence.definitions.use_case import Operator, Where
from feast_sequence.serving.batch import SequenceBatch

_COMPARE = {
    Operator.EQ: operator.eq,
    Operator.NE: operator.ne,
    Operator.LT: operator.lt,
    Operator.LE: operator.le,
    Operator.GT: operator.gt,
    Operator.GE: operator.ge,
}


def needed_fields(where: Sequence[Where]) -> Set[str]:
    return {condition.field for condition in where}


def filter_events(batch: SequenceBatch, where: Sequence[Where]) -> SequenceBatch:
    """Keep the events satisfying every condition; conditions on request values are per row, the
    job of candidates.py, and refused here."""
    if not where:
        return batch
    per_row = [c.field for c in where if c.from_request is not None]
    if per_row:
        raise TypeError(f"filter_events takes fixed conditions; filters on {per_row} take request values.")
    keep = np.ones(int(batch.lengths.sum()), dtype=bool)
    for condition in where:
        keep &= _matches(batch.columns[condition.field], condition)
    return batch.select(keep)


def _matches(column: np.ndarray, condition: Where) -> np.ndarray:
    op = Operator(condition.op)  # the member, whichever spelling the type checker saw
    if op in (Operator.IN, Operator.NOT_IN):
        if column.dtype == object:  # strings, bytes: hash lookups beat np.isin's sort on objects
            allowed = set(condition.value)
            hits = np.fromiter((v in allowed for v in column), dtype=bool, count=len(column))
        else:
            hits = np.isin(column, list(condition.value))
        return hits if op == Operator.IN else ~hits
    if column.dtype == object:
        hits = np.fromiter((v == condition.value for v in column), dtype=bool, count=len(column))
        return hits if op == Operator.EQ else ~hits
    return np.asarray(_COMPARE[op](column, condition.value), dtype=bool)
