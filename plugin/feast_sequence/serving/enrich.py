"""Enrich stage: add the features of a regular view to each event, joined by one event field.

Online, a request's distinct keys (across all its rows and views) are looked up in one Redis
pipeline (``feast_sequence.storage.lookup``); for training, values come from an as-of join instead. Both end
in :func:`join`, which maps per-key values onto the events without per-event Python.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import pandas as pd

from feast_sequence.definitions.enrichment import Enrichment
from feast_sequence.serving.batch import SequenceBatch, as_array
from feast_sequence.storage.lookup import missing_row

#: An enrichment's join field over a batch's events: each event's key code, and the distinct keys.
Factorized = Tuple[np.ndarray, List[Any]]


def factorize_keys(batch: SequenceBatch, enrichment: Enrichment) -> Factorized:
    codes, uniques = pd.factorize(batch.columns[enrichment.on])
    return codes, uniques.tolist()


def join(
    batch: SequenceBatch,
    enrichment: Enrichment,
    found: Mapping[Any, Tuple[Any, ...]],
    factorized: Optional[Factorized] = None,
) -> Tuple[SequenceBatch, int]:
    """The batch with the enrichment's fields added, and how many events had no value to join.
    ``factorized``: the batch's ``factorize_keys`` if already computed (the lookup needed its keys)."""
    codes, keys = factorized if factorized is not None else factorize_keys(batch, enrichment)
    # One C-speed pass (map) per step, not a Python loop per key and feature: the per-key table
    # becomes one column per feature, then spread to the events by their key codes.
    table = list(map(found.get, keys, repeat(missing_row(enrichment), len(keys))))
    present = np.fromiter(map(found.__contains__, keys), dtype=bool, count=len(keys))
    misses = int((~present[codes]).sum()) if len(codes) else 0
    for position, ((_, value_type), output) in enumerate(zip(enrichment.features, enrichment.output_names)):
        per_key = as_array(list(map(itemgetter(position), table)), value_type)
        batch = batch.with_column(output, per_key[codes], value_type)
    return batch, misses


def join_per_event(batch: SequenceBatch, enrichment: Enrichment, values: Dict[str, np.ndarray]) -> SequenceBatch:
    """The batch with already aligned per-event values added (the as-of join of training data)."""
    for (name, value_type), output in zip(enrichment.features, enrichment.output_names):
        batch = batch.with_column(output, values[name], value_type)
    return batch
