"""Enrich stage: add the features of a regular view to each event, joined by one event field.

Online, a request's distinct keys (across all its rows and views) are looked up in one Redis
pipeline (``feast_sequence.storage.lookup``); for training, values come from an as-of join instead.
Online, every view's join field is factorized together (:func:`factorize_together`), the distinct
keys' values are held column-wise (:class:`KeyValues`), and :func:`join_values` spreads them onto
the events by their key codes: no per-event Python, and no per-key Python but for cached rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from operator import is_not, itemgetter
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, cast

import numpy as np
import pandas as pd

from feast_sequence.definitions.enrichment import Enrichment
from feast_sequence.serving.batch import SequenceBatch, as_array
from feast_sequence.storage.lookup import missing_row

#: An enrichment's join field over a batch's events: each event's key code, and the distinct keys.
Factorized = Tuple[np.ndarray, List[Any]]


@dataclass(frozen=True)
class KeyValues:
    """An enrichment's values for a list of distinct keys, column-wise: whether each key has a
    value, and each feature's values in key order (its type's null default where it has none)."""

    present: np.ndarray
    columns: List[np.ndarray]

    @staticmethod
    def of_columns(enrichment: Enrichment, present: np.ndarray, columns: Sequence[Sequence[Any]]) -> "KeyValues":
        return KeyValues(present, [as_array(c, t) for c, (_, t) in zip(columns, enrichment.features)])

    @staticmethod
    def of_rows(enrichment: Enrichment, rows: Sequence[Optional[Tuple[Any, ...]]]) -> "KeyValues":
        """From one row of feature values per key, None for a key without a value."""
        present = np.fromiter(map(is_not, rows, repeat(None)), dtype=bool, count=len(rows))
        missing = missing_row(enrichment)
        filled = cast(Sequence[Tuple[Any, ...]], rows if present.all() else [missing if r is None else r for r in rows])
        # A map per feature, not zip(*rows): that makes an iterator per row, and thousands of new
        # objects a request trigger the garbage collector (a full collection took 0.5 s here).
        columns = [list(map(itemgetter(position), filled)) for position in range(len(enrichment.features))]
        return KeyValues.of_columns(enrichment, present, columns)


def factorize_keys(batch: SequenceBatch, enrichment: Enrichment) -> Factorized:
    codes, uniques = pd.factorize(batch.columns[enrichment.on])
    return codes, uniques.tolist()


def factorize_together(columns: Sequence[np.ndarray]) -> Tuple[List[np.ndarray], List[Any]]:
    """Join fields of several batches (views sharing one lookup) factorized as one: each batch's key
    codes into one list of the distinct keys, which a lookup then reads once."""
    if len(columns) == 1:
        codes, uniques = pd.factorize(columns[0])
        return [codes], uniques.tolist()
    codes, uniques = pd.factorize(np.concatenate(columns))
    return np.split(codes, np.cumsum([len(c) for c in columns[:-1]])), uniques.tolist()


def join_values(
    batch: SequenceBatch, enrichment: Enrichment, codes: np.ndarray, values: KeyValues
) -> Tuple[SequenceBatch, int]:
    """The batch with the enrichment's fields added from ``values`` (of the keys ``codes`` index),
    and how many events had no value to join."""
    misses = int(np.count_nonzero(~values.present[codes]))
    for per_key, (_, value_type), output in zip(values.columns, enrichment.features, enrichment.output_names):
        batch = batch.with_column(output, per_key[codes], value_type)
    return batch, misses


def join(
    batch: SequenceBatch,
    enrichment: Enrichment,
    found: Mapping[Any, Tuple[Any, ...]],
    factorized: Optional[Factorized] = None,
) -> Tuple[SequenceBatch, int]:
    """The batch with the enrichment's fields added from ``{key: values}``, and how many events had
    no value to join. ``factorized``: the batch's ``factorize_keys`` if already computed."""
    codes, keys = factorized if factorized is not None else factorize_keys(batch, enrichment)
    return join_values(batch, enrichment, codes, KeyValues.of_rows(enrichment, list(map(found.get, keys))))


def join_per_event(batch: SequenceBatch, enrichment: Enrichment, values: Dict[str, np.ndarray]) -> SequenceBatch:
    """The batch with already aligned per-event values added (the as-of join of training data)."""
    for (name, value_type), output in zip(enrichment.features, enrichment.output_names):
        batch = batch.with_column(output, values[name], value_type)
    return batch
