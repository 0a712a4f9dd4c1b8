"""feast-sequence: the last N events of an entity as Feast features, appended in real time on Redis.

Public API: define views with :class:`SequenceFeatureView`, configure
``provider: feast_sequence.SequenceProvider`` and the online store
``feast_sequence.online_store.SequenceRedisOnlineStore``; recover settings with
:func:`sequence_settings`.
"""

from feast_sequence._enrich_spec import Enrichment, enrich
from feast_sequence._provider import SequenceProvider
from feast_sequence._settings import (
    MAX_LENGTH_CAP,
    EventField,
    SequenceSettings,
    is_sequence_view,
    sequence_settings,
)
from feast_sequence._view import SequenceFeatureView
from feast_sequence.serving import (
    Limits,
    SequenceSpec,
    SequenceUseCase,
    Where,
    to_jagged,
    to_numpy,
    to_tensors,
    use_case_settings,
)
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

__all__ = [
    "Enrichment",
    "EventField",
    "FeastSequenceError",
    "Limits",
    "MAX_LENGTH_CAP",
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
    "Where",
    "enrich",
    "is_sequence_view",
    "sequence_settings",
    "to_jagged",
    "to_numpy",
    "to_tensors",
    "use_case_settings",
]
