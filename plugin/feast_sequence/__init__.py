"""feast-sequence: the last N events of an entity as Feast features, appended in real time on Redis.

Public API: define views with :class:`SequenceFeatureView`, configure
``provider: feast_sequence.SequenceProvider`` and the online store
``feast_sequence.online_store.SequenceRedisOnlineStore``; recover settings with
:func:`sequence_settings`; a use case's training data with :func:`get_training_data`; real-time
ingest whose cost does not grow with the registry with :func:`push` / :func:`push_async`.
"""

from feast_sequence.definitions.enrichment import Enrichment, EnrichmentCache, enrich
from feast_sequence.definitions.settings import (
    MAX_LENGTH_CAP,
    EventField,
    SequenceSettings,
    is_sequence_view,
    sequence_settings,
)
from feast_sequence.definitions.use_case import (
    Limits,
    Operator,
    Order,
    OutputFormat,
    Padding,
    SequenceSpec,
    SequenceUseCase,
    UseCaseSettings,
    Where,
    is_use_case,
    use_case_settings,
)
from feast_sequence.definitions.view import SequenceFeatureView
from feast_sequence.errors import (
    FeastSequenceError,
    SequenceConfigurationError,
    SequenceDefinitionError,
    SequenceInputError,
    SequenceRequestError,
    SequenceStoreError,
    SequenceStoreUnavailableError,
    SequenceValidationError,
)
from feast_sequence.online.provider import SequenceProvider
from feast_sequence.online.push import push, push_async
from feast_sequence.online.training_data import get_training_data
from feast_sequence.serving.featurize import Jagged, to_jagged, to_numpy, to_tensors

__all__ = [
    "Enrichment",
    "EnrichmentCache",
    "EventField",
    "FeastSequenceError",
    "Jagged",
    "Limits",
    "MAX_LENGTH_CAP",
    "Operator",
    "Order",
    "OutputFormat",
    "Padding",
    "SequenceConfigurationError",
    "SequenceDefinitionError",
    "SequenceFeatureView",
    "SequenceInputError",
    "SequenceProvider",
    "SequenceRequestError",
    "SequenceSettings",
    "SequenceSpec",
    "SequenceStoreError",
    "SequenceStoreUnavailableError",
    "SequenceUseCase",
    "SequenceValidationError",
    "UseCaseSettings",
    "Where",
    "enrich",
    "get_training_data",
    "is_sequence_view",
    "is_use_case",
    "push",
    "push_async",
    "sequence_settings",
    "to_jagged",
    "to_numpy",
    "to_tensors",
    "use_case_settings",
]
