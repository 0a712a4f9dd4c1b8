"""Enrich stage: add the features of a regular view to each event, joined by one event field.

Online, a request's distinct keys (across all its rows and views) are looked up in one Redis
pipeline (``feast_sequence.storage.lookup``); for training, values come from an as-of join instead. Both end
in :func:`join`, which maps per-key values onto the events without per-event Python.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

import numpy as np
import pandas as pd

from feast_sequence.definitions.enrichment import Enrichment
from feast_sequence.serving.batch import SequenceBatch, as_array
from feast_sequence.storage.lookup import missing_row


def distinct_keys(batch: SequenceBatch, enrichment: Enrichment) -> List[Any]:
    keys: List[Any] = pd.unique(batch.columns[enrichment.on]).tolist()
    return keys


def join(
    batch: SequenceBatch, enrichment: Enrichment, found: Mapping[Any, Tuple[Any, ...]]
) -> Tuple[SequenceBatch, int]:
    """The batch with the enrichment's fields added, and how many events had no value to join."""
    codes, uniques = pd.factorize(batch.columns[enrichment.on])
    missing = missing_row(enrichment)
    table = [found.get(key, missing) for key in uniques.tolist()]
    present = np.fromiter((key in found for key in uniques.tolist()), dtype=bool, count=len(uniques))
    misses = int((~present[codes]).sum()) if len(codes) else 0
    for position, ((_, value_type), output) in enumerate(zip(enrichment.features, enrichment.output_names)):
        per_key = as_array([row[position] for row in table], value_type)
        batch = batch.with_column(output, per_key[codes], value_type)
    return batch, misses


def join_per_event(batch: SequenceBatch, enrichment: Enrichment, values: Dict[str, np.ndarray]) -> SequenceBatch:
    """The batch with already aligned per-event values added (the as-of join of training data)."""
    for (name, value_type), output in zip(enrichment.features, enrichment.output_names):
        batch = batch.with_column(output, values[name], value_type)
    return batch
