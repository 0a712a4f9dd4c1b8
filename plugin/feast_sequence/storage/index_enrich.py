"""Index-time enrichment: fill a view's enriched fields from the online store before events are stored.

Pushes, materialization and the Spark jobs all write through here, so an enrichment declared on a
view (``SequenceFeatureView(enrich=[...])``) is computed the same way whichever path wrote the event:
the joined view's online value when the event is written. One pipeline looks up every distinct key
of a batch.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

import pandas as pd
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.storage.lookup import VALUE_FIELD, decode_lookup, lookup_commands, missing_row
from feast_sequence.storage.redis_io import Command

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


ProtoRow = Tuple[Any, Dict[str, ValueProto], Any, Any]


def plan_proto_row_enrichment(
    settings: SequenceSettings,
    project: str,
    serialization_version: int,
    rows: Sequence[ProtoRow],
    one_call_per_key: bool = False,
) -> Tuple[List[Command], Callable[[List[Any]], List[ProtoRow]]]:
    """The same for rows in Feast's ``online_write_batch`` shape (custom writers): each row's values
    gain the enriched fields as ``Value``s."""
    if not settings.enrichments or not rows:
        return [], lambda _: list(rows)
    frame = pd.DataFrame({e.on: [_python(values.get(e.on)) for _, values, _, _ in rows] for e in settings.enrichments})
    commands, enriched_frame = plan_index_enrichment(settings, project, serialization_version, frame, one_call_per_key)

    def finish(replies: List[Any]) -> List[ProtoRow]:
        enriched = enriched_frame(replies)
        columns = {
            output: (VALUE_FIELD[value_type], enriched[output].tolist())
            for e in settings.enrichments
            for (_, value_type), output in zip(e.features, e.output_names)
        }
        out = []
        for i, (key, values, event_ts, created_ts) in enumerate(rows):
            values = dict(values)
            for output, (field, column) in columns.items():
                values[output] = ValueProto(**{field: column[i]})
            out.append((key, values, event_ts, created_ts))
        return out

    return commands, finish


def _python(value: Any) -> Any:
    kind = value.WhichOneof("val") if value is not None else None
    return getattr(value, kind) if kind not in (None, "null_val") else None
