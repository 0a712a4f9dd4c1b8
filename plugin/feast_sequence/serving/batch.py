"""``SequenceBatch``: one view's sequences for a batch of rows, flat, as every serving stage sees them.

Rows are the unique entities of an online request, or the entity rows of a training set. Each column
holds the values of all rows back to back (row-major, each row newest first) with ``lengths`` saying
how many belong to each row: the jagged layout. Stages build boolean masks over the flat arrays
(numpy, no per-event Python) and :meth:`SequenceBatch.select` keeps the marked events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from feast.value_type import ValueType

from feast_sequence.definitions.element_types import ELEMENT_TYPES

#: numpy element types of event fields; strings and bytes stay Python objects.
NUMPY_DTYPE: Dict[ValueType, Any] = {t: e.numpy_dtype for t, e in ELEMENT_TYPES.items()}


def as_array(values: Sequence[Any], value_type: ValueType) -> np.ndarray:
    dtype = NUMPY_DTYPE[value_type]
    if dtype is object:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return array
    if isinstance(values, (list, tuple)):
        return np.fromiter(values, dtype=dtype, count=len(values))
    # A protobuf repeated field (a decoded column): numpy copies it without a Python object per
    # element, ~300x faster than iterating it (0.006 vs 1.9 ms for 20,000 values).
    return np.array(values, dtype=dtype)


@dataclass
class SequenceBatch:
    """Columns by field name (flat numpy arrays) and each row's event count."""

    lengths: np.ndarray
    columns: Dict[str, np.ndarray] = field(default_factory=dict)
    types: Dict[str, ValueType] = field(default_factory=dict)
    _offsets: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def rows(self) -> int:
        return len(self.lengths)

    def offsets(self) -> np.ndarray:
        if self._offsets is None:
            self._offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
            np.cumsum(self.lengths, out=self._offsets[1:])
        return self._offsets

    def row_of_event(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.lengths)), self.lengths)

    def select(self, keep: np.ndarray) -> "SequenceBatch":
        """The events where ``keep`` is true, in the same order and rows."""
        if keep.all():
            return self
        lengths = np.bincount(self.row_of_event()[keep], minlength=self.rows).astype(np.int64)
        return SequenceBatch(lengths, {n: c[keep] for n, c in self.columns.items()}, dict(self.types))

    def with_column(self, name: str, values: np.ndarray, value_type: ValueType) -> "SequenceBatch":
        columns = dict(self.columns)
        columns[name] = values
        return SequenceBatch(self.lengths, columns, {**self.types, name: value_type}, self._offsets)

    def row_lists(self, name: str) -> List[List[Any]]:
        """One Python list per row (what Feast responses and DataFrames hold)."""
        flat = self.columns[name].tolist()
        offsets = self.offsets().tolist()
        return [flat[start:end] for start, end in zip(offsets, offsets[1:])]
