"""Event selection: which of an entity's source events an offline job indexes.

The store keeps the newest ``max_length`` events of whatever it is given, so the default policy,
``LastN``, gives it every event. ``TopScored`` indexes only each entity's best events of the last
days by a user-given Spark SQL score. Real-time appends always add the newest events: a view fed by
both serves the selected events until newer ones push them out (see docs/offline.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, Protocol

import pandas as pd

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import SequenceDefinitionError
from feast_sequence.storage.append import encode_frame

_SCORE = "__fsq_score"


class EventSelection(Protocol):
    """A policy: given a view's source events (a Spark DataFrame) and the job's end time, the events
    to index."""

    def select(self, settings: SequenceSettings, events: Any, end: datetime) -> Any: ...


@dataclass(frozen=True)
class LastN:
    """Index every event; the store keeps the newest max_length of them (the online semantics)."""

    def select(self, settings: SequenceSettings, events: Any, end: datetime) -> Any:
        return events


@dataclass(frozen=True)
class TopScored:
    """Per entity, the ``n`` highest-scoring events of the last ``days`` days before the job's end.

    ``score`` is a Spark SQL expression over the event fields, e.g. ``"quantity * unit_price"``.
    Events are deduplicated first exactly as the store does (the latest version of each identity),
    so n distinct events are picked; ties in score go to the newer event.
    """

    score: str
    days: int
    n: int

    def __post_init__(self) -> None:
        if self.days <= 0 or self.n <= 0:
            raise SequenceDefinitionError(f"TopScored needs days > 0 and n > 0 (got days={self.days}, n={self.n}).")

    def select(self, settings: SequenceSettings, events: Any, end: datetime) -> Any:
        from pyspark.sql import functions as F

        if self.n > settings.max_length:
            raise SequenceDefinitionError(
                f"TopScored n={self.n} exceeds max_length={settings.max_length} of '{settings.view_name}'."
            )
        ts = F.col(settings.timestamp_field)
        keys = [k for k, _ in settings.join_keys]
        recent = events.filter(ts >= F.lit(end - timedelta(days=self.days)))
        scored = recent.withColumn(_SCORE, F.expr(self.score).cast("double"))
        n = self.n

        def best(frame: pd.DataFrame) -> pd.DataFrame:
            return top_scored(settings, frame, n)

        return scored.groupBy(*keys).applyInPandas(best, scored.schema).drop(_SCORE)


def top_scored(settings: SequenceSettings, frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """One entity's events: dedup as the store does, then the ``n`` best by score (then newest)."""
    events = encode_frame(settings, frame)
    identities = events.identities if events.identities is not None else events.members
    winner: Dict[bytes, int] = {}
    for i, identity in enumerate(identities):
        j = winner.get(identity)
        if j is None or (events.scores_us[i], events.members[i]) > (events.scores_us[j], events.members[j]):
            winner[identity] = i
    scores = frame[_SCORE].fillna(float("-inf")).tolist()
    ranked = sorted(winner.values(), key=lambda i: (scores[i], events.scores_us[i], events.members[i]), reverse=True)
    return frame.iloc[ranked[:n]]
