"""``SequenceProvider``: Feast's passthrough provider, with pushes to sequence views sent as events.

Feast converts every pushed row to protobuf values one by one before the online store sees it, and
would convert a sequence view's scalar event columns as lists. This provider hands the pushed
DataFrame of a sequence view straight to the store, which validates and encodes it column-wise.
For training data, sequence views are computed point in time by ``offline/historical.py`` (on Spark or pandas)
and joined with what Feast's offline store returns for regular views. Everything else is Feast's own
behaviour.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, runtime_checkable

import pandas as pd
import pyarrow as pa
from feast import FeatureStore, FeatureView
from feast.data_source import PushSource
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.infra.offline_stores.offline_utils import get_pyarrow_schema_from_batch_source
from feast.infra.passthrough_provider import PassthroughProvider
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig

from feast_sequence.definitions.enrichment import Enrichment
from feast_sequence.definitions.settings import SequenceSettings, is_sequence_view, sequence_settings
from feast_sequence.definitions.use_case import UseCaseSettings, is_use_case, validate_use_case
from feast_sequence.errors import SequenceConfigurationError, SequenceInputError, SequenceRequestError
from feast_sequence.feast_internals import historical_request, rows_for_ingestion, store_provider
from feast_sequence.offline.erasures import drop_erased_pandas, drop_erased_spark, read_markers
from feast_sequence.offline.historical import engine_for, historical_job
from feast_sequence.offline.indexing import (
    IndexTarget,
    newest_before_pandas,
    newest_before_spark,
    write_local,
    write_spark,
)
from feast_sequence.offline.local_sources import (
    append_to_folder,
    data_files,
    has_no_history,
    source_file_path,
    write_empty_source,
)
from feast_sequence.offline.sources import checked_source, checked_view, refuse_single_file_offline_push
from feast_sequence.offline.spark import spark_session, uses_spark
from feast_sequence.online.push_views import PushSourceViews
from feast_sequence.online.remote_push import is_remote
from feast_sequence.online.store import SequenceRedisOnlineStore
from feast_sequence.serving.log_files import write_file_logs
from feast_sequence.serving.training import ENRICHMENT_TIME_US
from feast_sequence.storage.append import encode_frame
from feast_sequence.storage.codec import EncodedEvents
from feast_sequence.storage.json_events import encode_json_columns

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class SequenceProvider(PassthroughProvider):
    """Set ``provider: feast_sequence.SequenceProvider`` in feature_store.yaml to use sequence views."""

    def __init__(self, config: RepoConfig):
        super().__init__(config)
        store = self.online_store  # Feast's property makes the store once: tell it who feeds it
        if isinstance(store, SequenceRedisOnlineStore):
            store.made_by_sequence_provider = True
        self._own_push_views: Optional[PushSourceViews] = None
        self._store_push_views: Optional[PushSourceViews] = None

    def _sequence_store(self) -> SequenceRedisOnlineStore:
        store = self.online_store
        if not isinstance(store, SequenceRedisOnlineStore):
            raise SequenceConfigurationError(
                "Sequence views need 'online_store: type: "
                "feast_sequence.online_store.SequenceRedisOnlineStore' in feature_store.yaml "
                f"(found {type(store).__name__})."
            )
        return store

    def push_views(self, registry: Any) -> PushSourceViews:
        """The push source index of a store's ``registry`` (``feast_sequence.push``), kept across
        calls so that it is rebuilt only when that registry's cache changes."""
        views = self._store_push_views
        if views is None or views.registry is not registry:
            views = self._store_push_views = PushSourceViews(registry, self.repo_config.project)
        return views

    def ingest_df(self, feature_view: Any, df: pd.DataFrame, field_mapping: Optional[Dict[str, str]] = None) -> None:
        self._refuse_remote_push(feature_view)
        self._check_other_views_of_the_push(feature_view, df, field_mapping)
        self.write_pushed(feature_view, df, field_mapping)

    async def ingest_df_async(
        self, feature_view: Any, df: pd.DataFrame, field_mapping: Optional[Dict[str, str]] = None
    ) -> None:
        self._refuse_remote_push(feature_view)
        self._check_other_views_of_the_push(feature_view, df, field_mapping)
        await self.write_pushed_async(feature_view, df, field_mapping)

    def _refuse_remote_push(self, feature_view: Any) -> None:
        """``store.push`` from a client of a feature server converts a sequence view's events as lists,
        view by view (online/remote_push.py): refuse it, naming the push that works."""
        if is_sequence_view(feature_view) and is_remote(self.repo_config):
            source = getattr(feature_view.stream_source, "name", "<push source>")
            raise SequenceConfigurationError(
                f"Sequence view '{feature_view.name}': store.push cannot send events through "
                f"'online_store: type: remote'; use feast_sequence.push(store, '{source}', df) "
                "(or push_async), which sends them to feast-sequence serve's /push."
            )

    def write_pushed(self, feature_view: Any, df: pd.DataFrame, field_mapping: Optional[Dict[str, str]] = None) -> None:
        """Write a pushed frame to one view, without checking the push source's other views (the
        caller has: ``validate_push``). Regular views are written by Feast's own ``ingest_df``."""
        if not is_sequence_view(feature_view):
            super().ingest_df(feature_view, df, field_mapping)
            return
        self._sequence_store().write_events(self.repo_config, feature_view, _mapped(feature_view, df))

    async def write_pushed_async(
        self, feature_view: Any, df: pd.DataFrame, field_mapping: Optional[Dict[str, str]] = None
    ) -> None:
        """``write_pushed`` on the event loop (the same store operation, driven asynchronously)."""
        if not is_sequence_view(feature_view):
            await super().ingest_df_async(feature_view, df, field_mapping)
            return
        await self._sequence_store().write_events_async(self.repo_config, feature_view, _mapped(feature_view, df))

    def encode_json_columns(self, feature_view: Any, columns: Mapping[str, Sequence[Any]]) -> Optional[EncodedEvents]:
        """A small ``/push``'s events for a sequence view, without pandas (storage/json_events.py);
        None when the request needs the frame path: a regular view, a field mapping, a value to check
        there."""
        if not is_sequence_view(feature_view) or getattr(feature_view.batch_source, "field_mapping", None):
            return None
        return encode_json_columns(self._sequence_store().plan_cache.settings(feature_view), columns)

    async def write_encoded_async(self, feature_view: Any, events: EncodedEvents) -> None:
        """Write the events ``encode_json_columns`` returned for ``feature_view``."""
        await self._sequence_store().write_encoded_events_async(self.repo_config, feature_view, events)

    def validate_push(
        self, views: Sequence[Any], df: pd.DataFrame, field_mapping: Optional[Dict[str, str]] = None
    ) -> None:
        """Raise what writing ``df`` to any of ``views`` would raise, writing nothing.

        Sequence views encode the frame (index-time enriched fields are looked up at write time,
        not pushed); regular views convert it to Feast's rows as ``ingest_df`` does.
        """
        for view in views:
            if is_sequence_view(view):
                settings = sequence_settings(view)
                encode_frame(replace(settings, fields=settings.event_fields), _mapped(view, df))
            else:
                rows_for_ingestion(self, view, df, field_mapping)

    def _check_other_views_of_the_push(
        self, feature_view: Any, df: pd.DataFrame, field_mapping: Optional[Dict[str, str]]
    ) -> None:
        """Validate a pushed frame for every other view of its push source before writing this one.

        Feast writes a push source's views one by one, so a value bad only for the second view
        would otherwise fail after the first was written. Each view validates the others (the
        order is Feast's set order, and async pushes write them concurrently), so a bad value
        writes nothing anywhere. Costs one extra validation per other view; none for a push
        source that feeds one view. (``feast_sequence.push`` validates once, up front.)
        """
        source = getattr(feature_view, "stream_source", None)
        if not isinstance(source, PushSource):
            return
        others = [v for v in self._own_registry_push_views().fed_by(source.name) if v.name != feature_view.name]
        self.validate_push(others, df, field_mapping)

    def _own_registry_push_views(self) -> PushSourceViews:
        """Providers are not handed the store's registry: ``store.push`` validation reads its own."""
        if self._own_push_views is None:
            config = self.repo_config
            registry = FeatureStore(repo_path=str(config.repo_path), config=config).registry
            self._own_push_views = PushSourceViews(registry, config.project)
        return self._own_push_views

    def validate_data_source(self, config: RepoConfig, data_source: Any) -> None:
        """At `feast apply`: Feast's check, on the source as the offline store will read it (its path
        resolved against the repository), after refusing with what to do what it cannot read. A local
        source with no events yet has nothing to check: ``update_infra`` types it from its view."""
        path = source_file_path(config, data_source)
        if path is not None and has_no_history(path):
            return
        checked = checked_source(config, data_source)
        if uses_spark(config):
            spark_session(config)  # quiet: Feast's check would start a session with Spark's banner
        super().validate_data_source(config, checked)

    def update_infra(
        self,
        project: str,
        tables_to_delete: Sequence[Any],
        tables_to_keep: Sequence[Any],
        entities_to_delete: Sequence[Any],
        entities_to_keep: Sequence[Any],
        partial: bool,
    ) -> None:
        """Feast's, after giving each sequence view whose local batch source holds no event yet a
        typed empty file (offline/local_sources.py), so a push-only view starts from nothing."""
        for view in tables_to_keep:
            if isinstance(view, FeatureView) and is_sequence_view(view) and view.batch_source is not None:
                write_empty_source(self.repo_config, view)
        super().update_infra(project, tables_to_delete, tables_to_keep, entities_to_delete, entities_to_keep, partial)

    def get_table_column_names_and_types_from_data_source(self, config: RepoConfig, data_source: Any) -> Any:
        """What ``store.write_to_offline_store`` orders a push's columns by: the source as read."""
        return super().get_table_column_names_and_types_from_data_source(config, checked_source(config, data_source))

    def offline_push_schema(self, feature_view: Any) -> pa.Schema:
        """The arrow schema a push's offline part is written in: the view's batch source as read,
        after refusing a source that cannot take pushes (``refuse_single_file_offline_push``)."""
        view = checked_view(self.repo_config, feature_view)
        refuse_single_file_offline_push(self.repo_config, view)
        schema, _ = get_pyarrow_schema_from_batch_source(self.repo_config, view.batch_source)
        return schema

    def ingest_df_to_offline_store(self, feature_view: Any, table: pa.Table) -> None:
        """A push's offline part (``PushMode.OFFLINE`` / ``ONLINE_AND_OFFLINE``), to the batch source
        as the offline store reads it. Nanosecond timestamps (pandas' default) become microseconds,
        the finest unit Spark reads; sequence timestamps are microseconds anyway. A local
        ``SparkSource`` folder gets one new file (``append_to_folder``); other sources go through
        Feast's offline store."""
        view = checked_view(self.repo_config, feature_view)
        refuse_single_file_offline_push(self.repo_config, view)
        table = _microsecond_timestamps(table)
        path = source_file_path(self.repo_config, view.batch_source) if uses_spark(self.repo_config) else None
        if path is not None and path.is_dir() and data_files(path):
            append_to_folder(path, view, table)  # no Spark job, no temporary file's name printed
            return
        super().ingest_df_to_offline_store(view, table)

    def get_historical_features(
        self,
        config: RepoConfig,
        feature_views: List[Any],
        feature_refs: List[str],
        entity_df: Any,
        registry: Any,
        project: str,
        full_feature_names: bool,
        use_case: Optional[UseCaseSettings] = None,
        **kwargs: Any,
    ) -> RetrievalJob:
        """Feast's training data, with sequence views computed point in time.

        ``use_case``: shape each sequence as that use case serves it. Feast's
        ``FeatureStore.get_historical_features`` cannot pass it (it hands providers feature refs,
        not the FeatureService they came from); ``feast_sequence.get_training_data`` does. A request
        whose refs are exactly a use case's, without ``use_case``, is refused rather than answered
        with unshaped sequences.
        """
        sequences = [v for v in feature_views if isinstance(v, FeatureView) and is_sequence_view(v)]
        feature_views = [v if v in sequences else checked_view(config, v) for v in feature_views]
        if not sequences:
            return super().get_historical_features(
                config,
                feature_views,
                feature_refs,
                entity_df,
                registry,
                project,
                full_feature_names,
                **kwargs,
            )
        if use_case is None:
            _refuse_unshaped_use_case(registry, project, feature_refs)
        else:
            validate_use_case(use_case, {v.projection.name_to_use(): sequence_settings(v) for v in sequences})
        if entity_df is None:
            raise SequenceInputError("Sequence views need an entity_df (entity keys and timestamps).")
        engine, spark_events = engine_for(config)
        if not isinstance(entity_df, pd.DataFrame):
            entity_df = _entity_df_to_pandas(engine, entity_df)
        sequence_names = {v.projection.name_to_use() for v in sequences}
        odfv_names = {o.name for o in registry.list_on_demand_feature_views(project, allow_cache=True)}
        regular_views = [v for v in feature_views if v not in sequences]
        regular_refs = [r for r in feature_refs if r.split(":", 1)[0] not in sequence_names | odfv_names]

        def regular_job(entity: pd.DataFrame) -> RetrievalJob:
            return super(SequenceProvider, self).get_historical_features(
                config, regular_views, regular_refs, entity, registry, project, full_feature_names, **kwargs
            )

        markers = read_markers(config)

        def events_of(view: FeatureView, settings: SequenceSettings, start: datetime, end: datetime) -> Any:
            # Erased entities' events leave training data here, even while the source still holds them.
            job = self.pull_events(config, view, settings, start, end)
            if spark_events:
                return drop_erased_spark(settings, _spark_df(job), markers)
            return drop_erased_pandas(settings, job.to_df(), markers)

        enrichment_rows: Dict[Enrichment, pd.DataFrame] = {}

        def enrichment_source(enrichment: Enrichment) -> pd.DataFrame:
            if enrichment not in enrichment_rows:
                enrichment_rows[enrichment] = self._pull_enrichment(config, registry, project, enrichment)
            return enrichment_rows[enrichment]

        return historical_job(
            config,
            sequences,
            feature_refs,
            entity_df,
            full_feature_names,
            regular_job if regular_views and regular_refs else None,
            OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry),
            events_of,
            engine,
            use_case,
            enrichment_source,
        )

    def write_feature_service_logs(self, feature_service: Any, logs: Any, config: RepoConfig, registry: Any) -> None:
        """Serving logs (``FeatureStore.write_logged_features``): file destinations are written as
        parquet for every offline store (serving/log_files.py), others by the offline store."""
        from feast.infra.offline_stores.file_source import FileLoggingDestination

        destination = feature_service.logging_config.destination if feature_service.logging_config else None
        if isinstance(destination, FileLoggingDestination):
            write_file_logs(config, destination, logs)
        else:
            super().write_feature_service_logs(feature_service, logs, config, registry)

    def materialize_single_feature_view(
        self,
        config: RepoConfig,
        feature_view: Any,
        start_date: datetime,
        end_date: datetime,
        registry: Any,
        project: str,
        tqdm_builder: Any,
        disable_event_timestamp: bool = False,
    ) -> None:
        """Sequence views: write the events of [start, end] plus, per entity, the events before start
        that its sequence still holds, so a first or incremental run never leaves a sequence short.
        Re-runs are no-ops; real-time events merge under the same semantics."""
        if not (isinstance(feature_view, FeatureView) and is_sequence_view(feature_view)):
            return super().materialize_single_feature_view(
                config,
                checked_view(config, feature_view),
                start_date,
                end_date,
                registry,
                project,
                tqdm_builder,
                disable_event_timestamp,
            )
        settings = sequence_settings(feature_view)
        engine, spark_events = engine_for(config)
        target = IndexTarget(config.online_store, project, settings, config.entity_key_serialization_version)
        horizon = end_date - timedelta(microseconds=settings.ttl_us) if settings.ttl_us else _EPOCH
        job = self.pull_events(config, feature_view, settings, max(horizon, _EPOCH), end_date)
        start = max(start_date, horizon)
        if spark_events:
            from pyspark.sql import functions as F

            events = _spark_df(job)
            ts = F.col(settings.timestamp_field)
            selected = events.filter(ts >= F.lit(start)).unionByName(newest_before_spark(settings, events, start))
            written = write_spark(target, selected)
        else:
            events = job.to_df()
            in_range = events[pd.to_datetime(events[settings.timestamp_field], utc=True) >= pd.Timestamp(start)]
            written = write_local(target, pd.concat([in_range, newest_before_pandas(settings, events, start)]))
        bar = tqdm_builder(written.events)
        if written.erased:
            bar.set_postfix(dropped_as_erased=written.erased)
        bar.update(written.events)
        bar.close()

    def _pull_enrichment(self, config: RepoConfig, registry: Any, project: str, enrichment: Enrichment) -> pd.DataFrame:
        """Every row of an enrichment's view (its batch source), with times in microseconds."""
        view = registry.get_feature_view(enrichment.view, project)
        timestamp_field = view.batch_source.timestamp_field
        rows = self.offline_store.pull_all_from_table_or_query(
            config=config,
            data_source=checked_source(config, view.batch_source),
            join_key_columns=[enrichment.join_key],
            feature_name_columns=[name for name, _ in enrichment.features],
            timestamp_field=timestamp_field,
            created_timestamp_column=None,
            start_date=_EPOCH,
            end_date=datetime.now(timezone.utc) + timedelta(days=365 * 100),
        ).to_df()
        times = pd.DatetimeIndex(pd.to_datetime(rows[timestamp_field], utc=True)).as_unit("us").asi8
        return rows.assign(**{ENRICHMENT_TIME_US: times})

    def pull_events(
        self,
        config: RepoConfig,
        view: FeatureView,
        settings: SequenceSettings,
        start: datetime,
        end: datetime,
    ) -> RetrievalJob:
        """Events of a sequence view's batch source in [start, end], through Feast's offline store."""
        job: RetrievalJob = self.offline_store.pull_all_from_table_or_query(
            config=config,
            data_source=checked_source(config, _batch_source(view)),
            join_key_columns=[k for k, _ in settings.join_keys],
            feature_name_columns=list(settings.event_field_names),
            timestamp_field=settings.timestamp_field,
            created_timestamp_column=None,
            start_date=start,
            end_date=end,
        )
        return job


@runtime_checkable
class _SparkRetrievalJob(Protocol):
    """A job of Feast's Spark offline store (``SparkRetrievalJob``, or a subclass store's own)."""

    def to_spark_df(self) -> Any: ...


def _spark_df(job: RetrievalJob) -> Any:
    """The job's rows as a Spark DataFrame; only the Spark offline store's jobs have one."""
    if not isinstance(job, _SparkRetrievalJob):
        raise SequenceConfigurationError(
            f"The Spark offline store returned a {type(job).__name__}, which has no to_spark_df(); "
            "sequence views need its jobs to give Spark DataFrames."
        )
    return job.to_spark_df()


def sequence_provider(store: FeatureStore) -> SequenceProvider:
    """The store's provider, which must be feast-sequence's."""
    provider = store_provider(store)
    if not isinstance(provider, SequenceProvider):
        raise SequenceConfigurationError(
            "Sequence views need 'provider: feast_sequence.SequenceProvider' in feature_store.yaml "
            f"(found {type(provider).__name__})."
        )
    return provider


def _refuse_unshaped_use_case(registry: Any, project: str, feature_refs: List[str]) -> None:
    """Raise when ``feature_refs`` are exactly what a registered use case requests.

    That is what ``store.get_historical_features(features=use_case)`` hands the provider, and the
    use case's shaping would be silently lost: training data would differ from what it serves.
    """
    matches = [
        service.name
        for service in registry.list_feature_services(project, allow_cache=True)
        if is_use_case(service) and historical_request(registry, project, service).feature_refs == feature_refs
    ]
    if matches:
        name = matches[0]
        raise SequenceRequestError(
            f"These features are those of sequence use case(s) {matches}, which "
            "store.get_historical_features cannot shape (Feast does not tell the provider which "
            "FeatureService was asked for). Get the use case's training data with "
            f"feast_sequence.get_training_data(store, entity_df, {name!r}), or request fewer or more "
            "features for unshaped sequences."
        )


def _entity_df_to_pandas(engine: Any, entity_df: Any) -> pd.DataFrame:
    spark = getattr(engine, "spark", None)
    if isinstance(entity_df, str) and spark is not None:
        return spark.sql(entity_df).toPandas()
    if hasattr(entity_df, "toPandas"):
        return entity_df.toPandas()
    raise SequenceInputError(
        f"entity_df of type {type(entity_df).__name__} is not supported with sequence views; "
        "pass a pandas DataFrame (or, on Spark, a Spark DataFrame or SQL query)."
    )


def _batch_source(view: FeatureView) -> Any:
    if view.batch_source is None:
        raise SequenceConfigurationError(f"View '{view.name}' has no batch source to read events from.")
    return view.batch_source


def _microsecond_timestamps(table: pa.Table) -> pa.Table:
    fields = [
        field.with_type(pa.timestamp("us", field.type.tz)) if pa.types.is_timestamp(field.type) else field
        for field in table.schema
    ]
    schema = pa.schema(fields, metadata=table.schema.metadata)
    return table if schema.equals(table.schema) else table.cast(schema, safe=False)


def _mapped(feature_view: Any, df: pd.DataFrame) -> pd.DataFrame:
    """Apply the batch source's field mapping (source column -> feature name), as Feast does."""
    mapping = getattr(feature_view.batch_source, "field_mapping", None) or {}
    return df.rename(columns=mapping) if mapping else df
