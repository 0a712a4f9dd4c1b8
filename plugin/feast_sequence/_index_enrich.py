"""Index-time enrichment: fill a view's enriched fields from the online store before events are stored.

Pushes, materialization and the Spark jobs all write through here, so an enrichment declared on a
view (``SequenceFeatureView(enrich=[...])``) is computed the same way whichever path wrote the event:
the joined view's online value when the event is written. One pipeline looks up every distinct key
of a batch.
"""

from __future__ import annotations

from typing import Any, Callable, List, Tuple

import pandas as pd

from feast_sequence._lookup import decode_lookup, lookup_commands, missing_row
from feast_sequence._redis_io import Command
from feast_sequence._settings import SequenceSettings

Finish = Callable[[List[Any]], pd.DataFrame]


def plan_index_enrichment(
    settings: SequenceSettings,
    project: str,
    serialization_version: int,
    df: pd.DataFrame,
    one_call_per_key: bool = False,
) -> Tuple[List[Command], Finish]:
    """The lookups a batch of events needs, and how to add their results to it as columns."""
    if not settings.enrichments or df.empty:
        return [], lambda _: df
    lookups = []
    commands: List[Command] = []
    for enrichment in settings.enrichments:
        if enrichment.on not in df.columns:
            return [], lambda _: df  # encode_frame reports the missing column
        keys = pd.unique(df[enrichment.on].dropna()).tolist()
        start = len(commands)
        commands.extend(lookup_commands(enrichment, project, serialization_version, keys, one_call_per_key))
        lookups.append((enrichment, keys, start, len(commands)))

    def finish(replies: List[Any]) -> pd.DataFrame:
        enriched = df.copy()
        for enrichment, keys, start, end in lookups:
            found, _ = decode_lookup(enrichment, keys, replies[start:end])
            missing = missing_row(enrichment)
            rows = [found.get(key, missing) for key in enriched[enrichment.on].tolist()]
            for position, output in enumerate(enrichment.output_names):
                enriched[output] = [row[position] for row in rows]
        return enriched

    return commands, finish
