"""A use case request's sequence views: planned (``ViewPlan``), then served (``ServedView``).

The read planner (read_plan.py) makes the plans, the pipeline (pipeline.py) the served views, and
the serving log (serving_log.py) records them; each reads these records and none imports another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

import numpy as np

from feast_sequence.definitions.enrichment import Enrichment
from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.definitions.use_case import SequenceSpec
from feast_sequence.serving.batch import SequenceBatch
from feast_sequence.serving.filter import needed_fields


@dataclass
class ViewPlan:
    """One sequence view of a request: what to read, how to shape it, where its rows go."""

    table: Any
    name: str  # the name used in feature refs and full feature names
    settings: SequenceSettings
    spec: SequenceSpec
    requested: List[str]
    idxs: Any = None  # per unique entity (a batch row), the request rows it fills
    output_len: int = 0  # the request's row count

    @property
    def serving_enrichments(self) -> List[Enrichment]:
        return [e for e in self.spec.enrich if e not in self.settings.enrichments]

    @property
    def outputs(self) -> List[str]:
        """Requested fields, then every enriched field, in declaration order, then the age field."""
        names = list(self.requested)
        for enrichment in self.spec.enrich:
            names.extend(n for n in enrichment.output_names if n not in names)
        if self.spec.age_field is not None:
            names.append(self.spec.age_field)
        return names

    @property
    def decoded(self) -> List[str]:
        stored = set(self.settings.field_names) | {self.settings.timestamp_field}
        wanted = set(self.requested) | needed_fields(self.spec.where)
        wanted |= {e.on for e in self.serving_enrichments}
        wanted |= {n for e in self.spec.enrich if e in self.settings.enrichments for n in e.output_names}
        return sorted(wanted & stored)

    def owner(self) -> List[int]:
        """For each output row of the request, the unique entity (batch row) it shows."""
        owner = [0] * self.output_len
        for unique, destinations in enumerate(self.idxs):
            for out in destinations:
                owner[out] = unique
        return owner

    @property
    def length(self) -> int:
        return self.spec.length or self.settings.max_length


@dataclass
class ServedView:
    """A sequence view of a request once read: its plan, its events as the stages leave them, and
    each non-empty row's newest event time (taken before the arrange stage may reverse the rows)."""

    plan: ViewPlan
    batch: SequenceBatch
    newest: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
