"""``get_training_data``: a use case's training data, shaped as the use case serves it.

Feast's ``FeatureStore.get_historical_features`` hands the provider feature refs, not the
FeatureService they came from, so it cannot say which use case's shaping applies. This resolves the
request exactly as Feast does and passes the use case to ``SequenceProvider.get_historical_features``
as an argument.
"""

from __future__ import annotations

from typing import Any, Union

import pandas as pd
from feast import FeatureService, FeatureStore
from feast.errors import RequestDataNotFoundInEntityDfException
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.utils import make_df_tzaware

from feast_sequence.definitions.use_case import is_use_case, use_case_settings
from feast_sequence.errors import SequenceRequestError
from feast_sequence.feast_internals import historical_request, validate_feature_refs
from feast_sequence.online.provider import sequence_provider


def get_training_data(
    store: FeatureStore,
    entity_df: Any,
    use_case: Union[str, FeatureService],
    full_feature_names: bool = False,
) -> RetrievalJob:
    """Training data of a use case: for each row of ``entity_df`` (entity keys and a timestamp T),
    its features as the use case would have served them at T (docs/serving.md, "Training parity").

    ``use_case`` is a ``SequenceUseCase`` or its name; ``entity_df`` a pandas DataFrame (or, on
    Spark, a Spark DataFrame or SQL query). Returns Feast's ``RetrievalJob`` (``to_df``,
    ``to_arrow``), as ``store.get_historical_features`` does.
    """
    service = store.get_feature_service(use_case) if isinstance(use_case, str) else use_case
    if not is_use_case(service):
        raise SequenceRequestError(
            f"Feature service '{service.name}' is not a sequence use case; get its training data "
            "with store.get_historical_features(features=...)."
        )
    settings = use_case_settings(service)
    provider = sequence_provider(store)
    request = historical_request(store.registry, store.project, service)
    # What FeatureStore.get_historical_features checks before calling the provider.
    if isinstance(entity_df, pd.DataFrame):
        if store.config.coerce_tz_aware:
            entity_df = make_df_tzaware(entity_df)
        for odfv in request.on_demand_feature_views:
            for name in odfv.get_request_data_schema():
                if name not in entity_df.columns:
                    raise RequestDataNotFoundInEntityDfException(feature_name=name, feature_view_name=odfv.name)
    validate_feature_refs(request.requested_refs, full_feature_names)
    return provider.get_historical_features(
        store.config,
        request.feature_views,
        request.feature_refs,
        entity_df,
        store.registry,
        store.project,
        full_feature_names,
        use_case=settings,
    )
