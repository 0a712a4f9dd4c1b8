"""A use case's shaping applied to training data: what the online path would have served at each
row's timestamp.

The point-in-time sequences (``_pit``) are what Redis held at time T; from there the same stage
modules run as online: the window (relative to T instead of now), ``filter``, ``size``, then
serving-time enrichments joined as of T (the newest row of the joined view at or before T, what the
online store held then; an enrichment cache does not apply here), ``arrange`` (ages relative to T,
order), and the output format after on-demand views.
Index-time enrichments are joined as of each event's own time, before the point-in-time replay:
what a push at that time would have looked up.
"""

from __future__ import annotations

from itertools import chain
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from feast.value_type import ValueType

from feast_sequence.definitions.columns import EVENT_TIME_US, ROW_ID
from feast_sequence.definitions.enrichment import Enrichment
from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.definitions.use_case import OutputFormat, SequenceSpec, UseCaseSettings
from feast_sequence.serving.arrange import oldest_first, with_age
from feast_sequence.serving.batch import SequenceBatch, as_array
from feast_sequence.serving.candidates import select_per_row
from feast_sequence.serving.enrich import join_per_event
from feast_sequence.serving.featurize import PAD_VALUES, length_name, mask, mask_name, pad
from feast_sequence.serving.filter import filter_events
from feast_sequence.serving.size import first_n
from feast_sequence.storage.codec import NULL_DEFAULTS

#: Rows of an enrichment's view: its join key, ``ENRICHMENT_TIME_US`` and its features.
EnrichmentSource = Callable[[Enrichment], pd.DataFrame]
ENRICHMENT_TIME_US = "__fsq_enrichment_us"


def as_of(
    enrichment: Enrichment, source: pd.DataFrame, keys: Sequence[Any], times_us: np.ndarray
) -> Dict[str, np.ndarray]:
    """Per (key, time): the enrichment's features from the newest source row at or before that time;
    the type's null default where there is none."""
    left = pd.DataFrame(
        {"__key": list(keys), "__t": np.asarray(times_us, dtype=np.int64), "__pos": np.arange(len(keys))}
    )
    right = source.rename(columns={enrichment.join_key: "__key"})[
        ["__key", ENRICHMENT_TIME_US, *[n for n, _ in enrichment.features]]
    ]
    right = right.astype({ENRICHMENT_TIME_US: np.int64}).sort_values(ENRICHMENT_TIME_US, kind="stable")
    left["__key"] = left["__key"].astype(object)
    right["__key"] = right["__key"].astype(object)
    joined = pd.merge_asof(
        left.sort_values("__t", kind="stable"),
        right,
        left_on="__t",
        right_on=ENRICHMENT_TIME_US,
        by="__key",
        direction="backward",
    ).sort_values("__pos")
    out: Dict[str, np.ndarray] = {}
    for name, value_type in enrichment.features:
        column = joined[name].astype(object).where(joined[name].notna(), NULL_DEFAULTS[value_type])
        out[name] = as_array(column.tolist(), value_type)
    return out


def add_index_enrichments(settings: SequenceSettings, events: pd.DataFrame, source: EnrichmentSource) -> pd.DataFrame:
    """Events with their index-time enriched fields, each as of the event's own time."""
    if not settings.enrichments:
        return events
    events = events.copy()
    times = pd.DatetimeIndex(pd.to_datetime(events[settings.timestamp_field], utc=True)).as_unit("us").asi8
    for enrichment in settings.enrichments:
        values = as_of(enrichment, source(enrichment), events[enrichment.on].tolist(), times)
        for (name, _), output in zip(enrichment.features, enrichment.output_names):
            events[output] = values[name]
    return events


def needed_features(settings: SequenceSettings, spec: SequenceSpec, requested: Sequence[str]) -> List[str]:
    """What the point-in-time replay must return for the use case's stages."""
    index_time = [n for e in spec.enrich if e in settings.enrichments for n in e.output_names]
    wanted = list(requested) + [c.field for c in spec.where] + index_time
    wanted += [e.on for e in spec.enrich if e not in settings.enrichments]
    return list(dict.fromkeys(wanted + [EVENT_TIME_US]))


def shape(
    settings: SequenceSettings,
    spec: SequenceSpec,
    requested: Sequence[str],
    sequences: pd.DataFrame,
    row_time_us: np.ndarray,
    source: EnrichmentSource,
    request_values: Optional[Mapping[str, Sequence[Any]]] = None,
    represented_by: Optional[np.ndarray] = None,
) -> pd.DataFrame:
    """``ROW_ID`` and the use case's output lists, from the point-in-time sequences of the rows.

    ``sequences`` has ``ROW_ID`` and one list column per name of ``needed_features``;
    ``row_time_us[row id]`` is each row's timestamp; ``request_values[column][row id]`` each row's
    value of a request column a filter reads (candidates.py, checked). With a request filter,
    ``represented_by[row id]`` may name the row whose sequence a row shares (its entity and time are
    the same): ``sequences`` then holds the representatives only, and each row is selected from its
    representative's sequence, as online rows of one entity share one read.
    """
    types = {f.name: f.value_type for f in settings.fields}
    types[EVENT_TIME_US] = ValueType.INT64
    lengths = np.fromiter(map(len, sequences[EVENT_TIME_US]), dtype=np.int64, count=len(sequences))
    batch = SequenceBatch(lengths)
    for name in sequences.columns:
        if name == ROW_ID:
            continue
        flat = list(chain.from_iterable(sequences[name]))
        if name == settings.timestamp_field:  # already datetimes, as training data serves them
            batch = batch.with_column(name, as_array(flat, ValueType.STRING), ValueType.UNIX_TIMESTAMP)
        else:
            batch = batch.with_column(name, as_array(flat, types[name]), types[name])
    row_ids = sequences[ROW_ID].to_numpy()
    row_times = row_time_us[row_ids]
    if spec.window_us is not None:
        batch = batch.select(batch.columns[EVENT_TIME_US] >= np.repeat(row_times - spec.window_us, batch.lengths))
    batch = filter_events(batch, spec.fixed_conditions)
    for condition in spec.request_conditions:  # at most one (validate_use_case)
        asked = (request_values or {})[str(condition.from_request)]
        owner = np.arange(batch.rows)
        if represented_by is not None:
            position = np.full(len(represented_by), -1, dtype=np.int64)
            position[row_ids] = np.arange(len(row_ids))
            row_ids = np.flatnonzero(position[represented_by] >= 0)
            owner = position[represented_by[row_ids]]
            row_times = row_time_us[row_ids]
        per_row = [asked[row] for row in row_ids.tolist()]
        batch = select_per_row(batch, condition, owner, per_row, spec.length)
    batch = first_n(batch, spec.length)
    for enrichment in spec.enrich:
        if enrichment in settings.enrichments:
            continue
        values = as_of(
            enrichment,
            source(enrichment),
            batch.columns[enrichment.on].tolist(),
            np.repeat(row_times, batch.lengths),
        )
        batch = join_per_event(batch, enrichment, values)
    if spec.age_field is not None:
        event_seconds = batch.columns[EVENT_TIME_US] // 1_000_000  # whole seconds, floored, as stored
        batch = with_age(batch, spec.age_field, event_seconds, row_times // 1_000_000)
    if spec.oldest_first:
        batch = oldest_first(batch)
    outputs = list(requested)
    for enrichment in spec.enrich:
        outputs.extend(n for n in enrichment.output_names if n not in outputs)
    if spec.age_field is not None:
        outputs.append(spec.age_field)
    frame = pd.DataFrame({ROW_ID: row_ids})
    for name in outputs:
        frame[name] = batch.row_lists(name)
    return frame


def output_types(settings: SequenceSettings, spec: SequenceSpec) -> Dict[str, ValueType]:
    types = {f.name: f.value_type for f in settings.fields}
    types[settings.timestamp_field] = ValueType.UNIX_TIMESTAMP
    for enrichment in spec.enrich:
        types.update(zip(enrichment.output_names, (t for _, t in enrichment.features)))
    if spec.age_field is not None:
        types[spec.age_field] = ValueType.INT64
    return types


def featurize_frame(
    use_case: UseCaseSettings, views: Sequence[Any], frame: pd.DataFrame, full_feature_names: bool
) -> pd.DataFrame:
    """The use case's output format on a training frame (after on-demand views), as served online.

    ``views``: (name, settings, spec, output names) per sequence view.
    """
    if use_case.output == OutputFormat.LISTS:
        return frame
    frame = frame.copy()
    for name, settings, spec, outputs in views:
        length = spec.length or settings.max_length
        types = output_types(settings, spec)
        columns = [f"{name}__{o}" if full_feature_names else o for o in outputs]
        counts = [len(v) for v in frame[columns[0]]] if columns else []
        if use_case.output == OutputFormat.PADDED:
            left = spec.left_padded
            for output, column in zip(outputs, columns):
                pad_value = None if types[output] == ValueType.UNIX_TIMESTAMP else PAD_VALUES[types[output]]
                frame[column] = [pad(list(v), length, pad_value, left) for v in frame[column]]
            frame[mask_name(name)] = [mask(c, length, left) for c in counts]
        else:
            frame[length_name(name)] = counts
    return frame
