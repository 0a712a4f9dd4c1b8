"""Training data: ``get_historical_features`` for sequence views, on Spark or on pandas.

Sequence views are computed here with the shared point-in-time logic of ``_pit``; regular views go
to Feast's offline store as usual; the two are joined back on the entity rows and on-demand feature
views apply afterwards, as Feast does.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pandas as pd
import pyarrow as pa
from feast import FeatureView
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import infer_event_timestamp_from_entity_df
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from feast.type_map import NULL_TIMESTAMP_INT_VALUE
from feast.value_type import ValueType

from feast_sequence.definitions.columns import EVENT_TIME_US, QUERY_TIME_US, ROW_ID
from feast_sequence.definitions.element_types import ELEMENT_TYPES
from feast_sequence.definitions.settings import SequenceSettings, sequence_settings
from feast_sequence.definitions.use_case import SequenceSpec, UseCaseSettings
from feast_sequence.errors import SequenceConfigurationError, SequenceInputError
from feast_sequence.offline.pit import output_schema, sequences_as_of
from feast_sequence.offline.served_types import served_frame, utc_timestamps
from feast_sequence.offline.spark import spark_session, uses_spark
from feast_sequence.serving.candidates import check_request_values, request_columns
from feast_sequence.serving.training import (
    EnrichmentSource,
    add_index_enrichments,
    featurize_frame,
    needed_features,
    shape,
)
from feast_sequence.storage.conversion import column_values

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Spark types of a sequence of each element type.
_SPARK_ELEMENT = {t: e.spark_type_name for t, e in ELEMENT_TYPES.items()}


class SequenceRetrievalJob(RetrievalJob):
    """A retrieval whose sequence columns are computed on demand; ODFVs apply in ``to_arrow``."""

    def __init__(
        self,
        compute: Callable[[], pd.DataFrame],
        full_feature_names: bool,
        on_demand_feature_views: List[OnDemandFeatureView],
        metadata: RetrievalMetadata,
        finalize: Optional[Callable[[pd.DataFrame], pd.DataFrame]] = None,
    ):
        self._compute = compute
        self._finalize = finalize
        self._full_feature_names = full_feature_names
        self._on_demand_feature_views = on_demand_feature_views
        self._metadata = metadata

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> List[OnDemandFeatureView]:
        return self._on_demand_feature_views

    @property
    def metadata(self) -> Optional[RetrievalMetadata]:
        return self._metadata

    def to_arrow(self, validation_reference: Any = None, timeout: Optional[int] = None) -> pa.Table:
        """Feast's result (on-demand views applied), then a use case's output format if any;
        timestamps timezone-aware UTC, as served online."""
        table = super().to_arrow(validation_reference=validation_reference, timeout=timeout)
        if self._finalize is not None:
            table = pa.Table.from_pandas(self._finalize(served_frame(table)), preserve_index=False)
        return utc_timestamps(table)

    def to_df(self, validation_reference: Any = None, timeout: Optional[int] = None) -> pd.DataFrame:
        """``to_arrow`` as pandas, with timestamps as ``OnlineResponse.to_dict()`` gives them:
        UTC datetimes, and ``None`` for a null or a padded slot (not naive ``NaT``)."""
        return served_frame(self.to_arrow(validation_reference=validation_reference, timeout=timeout))

    def _to_df_internal(self, timeout: Optional[int] = None) -> pd.DataFrame:
        return self._compute()

    def _to_arrow_internal(self, timeout: Optional[int] = None) -> pa.Table:
        return pa.Table.from_pandas(self._compute(), preserve_index=False)

    def persist(self, storage: Any, allow_overwrite: bool = False, timeout: Optional[int] = None) -> None:
        raise NotImplementedError("Saving sequence retrievals as datasets is not supported yet.")


def sequence_refs(feature_refs: Sequence[str], views: Sequence[FeatureView]) -> Dict[str, List[str]]:
    """Requested features per sequence view (by the name used in refs)."""
    names = {v.projection.name_to_use(): v for v in views}
    out: Dict[str, List[str]] = {name: [] for name in names}
    for ref in feature_refs:
        view_name, feature = ref.split(":", 1)
        if view_name in out and feature not in out[view_name]:
            out[view_name].append(feature)
    return out


def historical_job(
    config: RepoConfig,
    sequence_views: Sequence[FeatureView],
    feature_refs: List[str],
    entity_df: pd.DataFrame,
    full_feature_names: bool,
    regular_job: Optional[Callable[[pd.DataFrame], RetrievalJob]],
    odfvs: List[OnDemandFeatureView],
    pull_events: Callable[[FeatureView, SequenceSettings, datetime, datetime], Any],
    engine: "SequenceEngine",
    use_case: Optional[UseCaseSettings] = None,
    enrichment_source: Optional[EnrichmentSource] = None,
) -> SequenceRetrievalJob:
    """Plan a retrieval: regular features through ``regular_job``, sequences through ``engine``;
    with ``use_case``, each sequence is shaped as that use case serves it (serving/training.py)."""
    entity = entity_df.reset_index(drop=True).copy()
    if ROW_ID in entity.columns:
        raise SequenceInputError(f"entity_df must not have a column named {ROW_ID!r}.")
    entity[ROW_ID] = range(len(entity))
    ts_column = infer_event_timestamp_from_entity_df(dict(zip(entity.columns, entity.dtypes)))
    query_times = pd.DatetimeIndex(pd.to_datetime(entity[ts_column], utc=True))
    if query_times.isna().any():
        position = int(query_times.isna().argmax())
        raise SequenceInputError(f"entity_df column {ts_column!r}, row {position}: timestamp is null.")
    query_us = query_times.as_unit("us").asi8
    requested = sequence_refs(feature_refs, sequence_views)
    request_values: Dict[str, List[Any]] = {}
    if use_case is not None:  # candidate columns (a filter's FromRequest), checked before any work
        readers = request_columns(use_case, {v.projection.name_to_use(): sequence_settings(v) for v in sequence_views})
        request_values = check_request_values(use_case.name, readers, entity, SequenceInputError)
    shaped: List[Tuple[str, SequenceSettings, SequenceSpec, List[str]]] = []

    def compute() -> pd.DataFrame:
        shaped.clear()
        result = regular_job(entity).to_df() if regular_job else entity
        time_column = ts_column
        for view in sequence_views:
            name = view.projection.name_to_use()
            features = requested[name]
            if not features:
                continue
            settings = sequence_settings(view)
            keys = [k for k, _ in settings.join_keys]
            missing = [k for k in keys if k not in entity.columns]
            if missing:
                raise SequenceInputError(f"entity_df lacks join key(s) {missing} of sequence view '{name}'.")
            queries = entity[keys + [ROW_ID]].assign(**{QUERY_TIME_US: query_us})
            represented_by = None
            if use_case is not None and use_case.spec(name).request_conditions:
                # Candidate rows of one entity at one time share one point-in-time sequence (as
                # online they share one read): computed once, for the first of them.
                first = queries.groupby(keys + [QUERY_TIME_US], sort=False, dropna=False)[ROW_ID].transform("min")
                represented_by = first.to_numpy()
                queries = queries[queries[ROW_ID] == first]
            start = _EPOCH
            if settings.ttl_us:
                start = max(_EPOCH, query_times.min().to_pydatetime() - timedelta(microseconds=settings.ttl_us))
            end = query_times.max().to_pydatetime() + timedelta(microseconds=1)
            events = pull_events(view, settings, start, end)
            if settings.enrichments:
                events = engine.with_index_enrichments(settings, events, _required(enrichment_source))
            if use_case is None:
                sequences = engine.compute(settings, features, events, queries)
            else:
                spec = use_case.spec(name)
                needed = needed_features(settings, spec, features)
                sequences = shape(
                    settings,
                    spec,
                    features,
                    engine.compute(settings, needed, events, queries),
                    query_us,
                    _required(enrichment_source),
                    request_values,
                    represented_by,
                )
                shaped.append((name, settings, spec, [c for c in sequences.columns if c != ROW_ID]))
            outputs = [c for c in sequences.columns if c != ROW_ID]
            renamed = {f: (f"{name}__{f}" if full_feature_names else f) for f in outputs}
            if ts_column in renamed.values() and ts_column in result.columns:
                # Online, the view's timestamp sequence is named as requested; so it is here, and
                # the entity_df's timestamp column (typically both are `event_timestamp`) moves.
                result = result.rename(columns={ts_column: as_of_column(ts_column)})
                time_column = as_of_column(ts_column)
            collisions = [c for c in renamed.values() if c in result.columns]
            if collisions:
                raise SequenceInputError(
                    f"Sequence feature(s) {collisions} of view '{name}' collide with columns of the "
                    "result; request them with full_feature_names=True."
                )
            result = result.merge(sequences.rename(columns=renamed), on=ROW_ID, how="left")
        # The entity_df's times in one type whatever the entity_df's unit and the offline store's
        # (pandas makes nanoseconds, Spark microseconds): docs/concepts.md.
        result[time_column] = pd.DatetimeIndex(pd.to_datetime(result[time_column], utc=True)).as_unit("us")
        return result.sort_values(ROW_ID, kind="stable").drop(columns=[ROW_ID]).reset_index(drop=True)

    metadata = RetrievalMetadata(
        features=feature_refs,
        keys=[c for c in entity_df.columns if c != ts_column],
        min_event_timestamp=query_times.min().to_pydatetime() if len(entity) else None,
        max_event_timestamp=query_times.max().to_pydatetime() if len(entity) else None,
    )
    finalize = None
    if use_case is not None:

        def finalize(frame: pd.DataFrame) -> pd.DataFrame:
            return featurize_frame(use_case, shaped, frame, full_feature_names)

    return SequenceRetrievalJob(compute, full_feature_names, odfvs, metadata, finalize)


def as_of_column(ts_column: str) -> str:
    """Where a training frame keeps the entity_df's timestamp column when a requested sequence
    feature takes its name (the view's timestamp field, without ``full_feature_names``)."""
    return f"{ts_column}__as_of"


def _required(source: Optional[EnrichmentSource]) -> EnrichmentSource:
    if source is None:
        raise SequenceConfigurationError("Enrichments in training data need the provider's enrichment source.")
    return source


class SequenceEngine:
    """Computes point-in-time sequences for a batch of queries from an entity's events."""

    def with_index_enrichments(self, settings: SequenceSettings, events: Any, source: EnrichmentSource) -> Any:
        return add_index_enrichments(settings, events, source)

    def compute(
        self, settings: SequenceSettings, features: List[str], events: Any, queries: pd.DataFrame
    ) -> pd.DataFrame:
        raise NotImplementedError


def _normalized_keys(settings: SequenceSettings, frame: pd.DataFrame) -> pd.DataFrame:
    """Join keys converted to their declared types, so events and queries group alike."""
    converted = frame.copy()
    for key, value_type in settings.join_keys:
        converted[key] = column_values(key, value_type, frame[key])
    return converted


class PandasEngine(SequenceEngine):
    """In-process engine for Feast's file offline store and small data."""

    def compute(
        self, settings: SequenceSettings, features: List[str], events: pd.DataFrame, queries: pd.DataFrame
    ) -> pd.DataFrame:
        keys = [k for k, _ in settings.join_keys]
        events = _normalized_keys(settings, events)
        events[EVENT_TIME_US] = (
            pd.DatetimeIndex(pd.to_datetime(events[settings.timestamp_field], utc=True)).as_unit("us").asi8
        )
        queries = _normalized_keys(settings, queries)
        grouped = {k if isinstance(k, tuple) else (k,): g for k, g in events.groupby(keys, sort=False)}
        empty = events.iloc[0:0]
        parts = [
            sequences_as_of(
                settings,
                features,
                pa.Table.from_pandas(grouped.get(k if isinstance(k, tuple) else (k,), empty), preserve_index=False),
                pa.Table.from_pandas(group, preserve_index=False),
            )
            for k, group in queries.groupby(keys, sort=False)
        ]
        table = pa.concat_tables(parts) if parts else output_schema(settings, features).empty_table()
        return as_served(settings, features, table.to_pandas())


class SparkEngine(SequenceEngine):
    """Spark engine: events and queries cogrouped by entity key, the shared logic per group.

    Cost is a shuffle of events plus queries and a sort per entity: linear in their sum, with no
    (query, event) pairs materialized. Executors need feast-sequence installed.
    """

    def __init__(self, spark: Any):
        self.spark = spark

    def with_index_enrichments(self, settings: SequenceSettings, events: Any, source: EnrichmentSource) -> Any:
        """Each executor joins its events with the enrichment views' rows, shipped to it in the task
        closure: suited to dimension tables (items, products) that fit in memory."""
        from pyspark.sql.types import StructType

        lookups = {e: source(e) for e in settings.enrichments}
        # A copy: StructType.add changes it in place, and PySpark caches a DataFrame's schema, so
        # adding to events.schema itself would give the events columns they do not have.
        schema = StructType(list(events.schema.fields))
        for enrichment in settings.enrichments:
            for (_, value_type), output in zip(enrichment.features, enrichment.output_names):
                schema = schema.add(output, _SPARK_ELEMENT[value_type])

        def per_batch(frames: Any) -> Any:
            for frame in frames:
                yield add_index_enrichments(settings, frame, lookups.__getitem__)

        return events.mapInPandas(per_batch, schema)

    def compute(
        self, settings: SequenceSettings, features: List[str], events: Any, queries: pd.DataFrame
    ) -> pd.DataFrame:
        query_frame = self.spark.createDataFrame(_normalized_keys(settings, queries))
        return as_served(settings, features, self.frame(settings, features, events, query_frame).toPandas())

    @staticmethod
    def frame(settings: SequenceSettings, features: List[str], events: Any, queries: Any) -> Any:
        """The distributed part: Spark DataFrames in (events; queries with ``ROW_ID`` and
        ``QUERY_TIME_US``), a Spark DataFrame of ``ROW_ID`` and sequences out."""
        from pyspark.sql import functions as F

        keys = [k for k, _ in settings.join_keys]
        events = events.withColumn(EVENT_TIME_US, F.unix_micros(F.col(settings.timestamp_field).cast("timestamp")))
        schema = spark_output_schema(settings, features)

        def per_entity(event_rows: pa.Table, query_rows: pa.Table) -> pa.Table:
            return sequences_as_of(settings, features, event_rows, query_rows)

        return events.groupBy(*keys).cogroup(queries.groupBy(*keys)).applyInArrow(per_entity, schema)


def as_served(settings: SequenceSettings, features: Sequence[str], frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as UTC datetimes of whole seconds (None for Feast's null), as ``to_dict`` serves them."""
    timestamp_fields = {settings.timestamp_field} | {
        f.name for f in settings.fields if f.value_type == ValueType.UNIX_TIMESTAMP
    }
    for name in features:
        if name in timestamp_fields:
            frame[name] = [
                [None if s == NULL_TIMESTAMP_INT_VALUE else datetime.fromtimestamp(s, tz=timezone.utc) for s in v]
                for v in frame[name]
            ]
        else:
            frame[name] = [list(v) for v in frame[name]]
    return frame


def spark_output_schema(settings: SequenceSettings, features: Sequence[str]) -> str:
    types = {f.name: _SPARK_ELEMENT[f.value_type] for f in settings.fields}
    types[settings.timestamp_field] = "bigint"
    types[EVENT_TIME_US] = "bigint"
    return ", ".join([f"`{ROW_ID}` bigint"] + [f"`{name}` array<{types[name]}>" for name in features])


def engine_for(config: RepoConfig) -> Tuple[SequenceEngine, bool]:
    """The engine for the configured offline store, and whether events come as Spark frames."""
    if uses_spark(config):
        return SparkEngine(spark_session(config)), True
    # Every offline store config has a `type`: Feast chose the config class by it.
    kind: str = config.offline_store.type
    if kind in ("file", "dask") or kind.endswith(("FileOfflineStore", "DaskOfflineStore")):
        return PandasEngine(), False
    if kind == "remote":
        # Feast's offline server runs its offline store's point-in-time join itself, without the
        # provider that computes sequences, so it cannot serve sequence views (docs/deployment.md).
        raise SequenceConfigurationError(
            "Sequence views' training data cannot come through Feast's offline server "
            "('offline_store: type: remote', `feast serve_offline`); compute it where the Spark "
            "offline store is configured: run get_historical_features or "
            "feast_sequence.get_training_data with the server's feature_store.yaml (docs/deployment.md)."
        )
    raise SequenceConfigurationError(
        f"Sequence views support the 'spark' and 'file' offline stores for training data (found {kind!r})."
    )
