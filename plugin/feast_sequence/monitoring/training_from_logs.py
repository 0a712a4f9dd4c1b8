"""Training data from serving logs: what the model was actually served, joined to labels.

``training_frame_from_logs(store, use_case, labels)`` gives, for each label row (entity keys, a
timestamp, label columns), the response the use case served for that entity most recently at or
before the label's time, in the layout ``get_training_data`` (``get_historical_features``) gives for
the same use case: the same columns, in the same order, with the same types. Rows logged by another
configuration of the use case (its version changed) are left out unless ``any_version``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Dict, List, Optional, Tuple, Union

import pandas as pd
import pyarrow as pa
from feast import FeatureService, FeatureStore
from feast.infra.offline_stores.offline_store import RetrievalMetadata
from feast.infra.offline_stores.offline_utils import infer_event_timestamp_from_entity_df

from feast_sequence.definitions.settings import SequenceSettings, is_sequence_view, sequence_settings
from feast_sequence.definitions.use_case import Operator, SequenceSpec, is_use_case, use_case_settings
from feast_sequence.errors import SequenceInputError, SequenceRequestError
from feast_sequence.feast_internals import historical_request
from feast_sequence.offline.historical import SequenceRetrievalJob, sequence_refs
from feast_sequence.serving.log_files import read_file_logs
from feast_sequence.serving.serving_log import LOG_TIMESTAMP, USE_CASE_VERSION_FIELD, logged_column, use_case_version
from feast_sequence.serving.training import featurize_frame

_LOG_ROW = "__fsq_log_row"
_LABEL_ROW = "__fsq_label_row"

#: Per sequence view of a use case: its name, settings, spec and served fields (in served order).
ServedViews = List[Tuple[str, SequenceSettings, SequenceSpec, List[str]]]


def served_views(store: FeatureStore, service: FeatureService) -> ServedViews:
    """The use case's sequence views and the fields each serves; refuses use cases whose responses
    hold more than sequences (regular views, on-demand views), which the log does not keep."""
    settings = use_case_settings(service)
    request = historical_request(store.registry, store.project, service)
    others = [v.name for v in request.feature_views if not is_sequence_view(v)]
    others += [v.name for v in request.on_demand_feature_views]
    if others:
        raise SequenceRequestError(
            f"Use case '{service.name}' also serves {others}; serving logs keep sequences only, so its "
            "training data cannot come from them."
        )
    requested = sequence_refs(request.feature_refs, request.feature_views)
    views: ServedViews = []
    for view in request.feature_views:
        name = view.projection.name_to_use()
        spec = settings.spec(name)
        outputs = list(requested[name])
        for enrichment in spec.enrich:
            outputs.extend(n for n in enrichment.output_names if n not in outputs)
        views.append((name, sequence_settings(view), spec, outputs))
    return views


def training_frame_from_logs(
    store: FeatureStore,
    use_case: Union[str, FeatureService],
    labels: pd.DataFrame,
    logs: Optional[pa.Table] = None,
    full_feature_names: bool = False,
    max_age: Optional[timedelta] = None,
    any_version: bool = False,
) -> pd.DataFrame:
    """Label rows joined to the use case's logged responses, by entity and time (see the module
    docstring). ``logs``: the log rows (default: everything in the use case's file destination);
    ``max_age``: ignore responses older than this before a label. Label rows with no logged
    response are left out."""
    service = store.get_feature_service(use_case) if isinstance(use_case, str) else use_case
    if not is_use_case(service):
        raise SequenceRequestError(f"Feature service '{service.name}' is not a sequence use case.")
    if logs is None:
        if service.logging_config is None:
            raise SequenceRequestError(f"Use case '{service.name}' has no logging_config: it logs nothing.")
        logs = read_file_logs(store.config, service.logging_config.destination)
    views = served_views(store, service)
    keys: Dict[str, Any] = {}
    for _, settings, _, _ in views:
        keys.update(settings.join_keys)
    missing = [k for k in keys if k not in labels.columns]
    if missing:
        raise SequenceInputError(f"labels lack the join key(s) {missing} of use case '{service.name}'.")
    asked = _candidate_columns(views, service.name, labels)
    keys.update(asked)
    time_column = infer_event_timestamp_from_entity_df(dict(zip(labels.columns, labels.dtypes)))
    # As get_training_data gives the entity_df's times: UTC microseconds whatever their unit.
    times = pd.DatetimeIndex(pd.to_datetime(labels[time_column], utc=True)).as_unit("us")
    labels = labels.assign(**{time_column: times})

    index = pd.DataFrame({k: logs.column(k).to_pandas() for k in keys}) if logs.num_rows else None
    if index is None:
        return _empty_like(labels, views, service, full_feature_names)
    index[LOG_TIMESTAMP] = pd.to_datetime(logs.column(LOG_TIMESTAMP).to_pandas(), utc=True).astype(
        "datetime64[us, UTC]"
    )
    index[_LOG_ROW] = range(logs.num_rows)
    if not any_version:
        index = index[logs.column(USE_CASE_VERSION_FIELD).to_numpy(zero_copy_only=False) == use_case_version(service)]
    left = labels.reset_index(drop=True).copy()
    left[_LABEL_ROW] = range(len(left))
    left["__fsq_label_time"] = pd.to_datetime(left[time_column], utc=True).astype("datetime64[us, UTC]")
    for key in keys:  # compare keys as the log stores them
        left[key] = left[key].astype(index[key].dtype) if len(index) else left[key]
    joined = pd.merge_asof(
        left.sort_values("__fsq_label_time", kind="stable"),
        index.sort_values(LOG_TIMESTAMP, kind="stable"),
        left_on="__fsq_label_time",
        right_on=LOG_TIMESTAMP,
        by=list(keys),
        direction="backward",
        tolerance=pd.Timedelta(max_age) if max_age is not None else None,
    )
    joined = joined[joined[_LOG_ROW].notna()].sort_values(_LABEL_ROW)
    rows = pa.array(joined[_LOG_ROW].astype("int64").to_numpy())
    frame = labels.reset_index(drop=True).iloc[joined[_LABEL_ROW].to_numpy()].reset_index(drop=True)
    for name, _, _, outputs in views:
        for output in outputs:
            column = logged_column(name, output)
            if column not in logs.column_names:
                raise SequenceInputError(
                    f"The logs of use case '{service.name}' have no column {column!r}: they were written "
                    "by another configuration; pass the matching logs."
                )
            name_in_frame = column if full_feature_names else output
            if name_in_frame in labels.columns:
                raise SequenceInputError(
                    f"Feature {name_in_frame!r} of use case '{service.name}' collides with a column of labels; "
                    "use full_feature_names=True."
                )
            frame[name_in_frame] = logs.column(column).take(rows).to_pylist()
    return _as_retrieved(frame, views, service, full_feature_names)


def _candidate_columns(views: ServedViews, use_case: str, labels: pd.DataFrame) -> Dict[str, None]:
    """The request columns of the use case's filters (``FromRequest``): each label row joins the
    responses logged for its own candidate, so the labels must have them."""
    asked: Dict[str, None] = {}
    for _, _, spec, _ in views:
        for condition in spec.request_conditions:
            column = str(condition.from_request)
            if Operator(condition.op).takes_list:
                raise SequenceInputError(
                    f"Use case '{use_case}' filters by the list in request column {column!r}: labels cannot be "
                    "joined to its logged responses by a list; use get_training_data."
                )
            if column not in labels.columns:
                raise SequenceInputError(
                    f"labels lack the request column {column!r} of use case '{use_case}' (each row's candidate)."
                )
            asked[column] = None
    return asked


def _empty_like(
    labels: pd.DataFrame, views: ServedViews, service: FeatureService, full_feature_names: bool
) -> pd.DataFrame:
    frame = labels.iloc[0:0].reset_index(drop=True).copy()
    for name, _, _, outputs in views:
        for output in outputs:
            frame[logged_column(name, output) if full_feature_names else output] = pd.Series([], dtype=object)
    return _as_retrieved(frame, views, service, full_feature_names)


def _as_retrieved(
    frame: pd.DataFrame, views: ServedViews, service: FeatureService, full_feature_names: bool
) -> pd.DataFrame:
    """The frame through the retrieval job ``get_training_data`` returns (output format, then
    ``to_df``'s conversions), so that columns and element types are the same by construction."""
    settings = use_case_settings(service)
    job = SequenceRetrievalJob(
        lambda: frame,
        full_feature_names,
        [],
        RetrievalMetadata(features=[], keys=[]),
        finalize=lambda retrieved: featurize_frame(settings, views, retrieved, full_feature_names),
    )
    result: pd.DataFrame = job.to_df()
    return result
