"""feast-sequence: the last N events of an entity as Feast features, appended in real time on Redis.

Public API: define views with :class:`SequenceFeatureView`, configure
``provider: feast_sequence.SequenceProvider`` and the online store
``feast_sequence.online_store.SequenceRedisOnlineStore``; recover settings with
:func:`sequence_settings`; a use case's training data with :func:`get_training_data`; real-time
ingest whose cost does not grow with the registry with :func:`push` / :func:`push_async`; erasing
entities everywhere, for good, with :func:`erase`.
"""

import importlib
import typing

if typing.TYPE_CHECKING:
    from feast_sequence.definitions.enrichment import Enrichment, EnrichmentCache, enrich
    from feast_sequence.definitions.settings import (
        MAX_LENGTH_CAP,
        EventField,
        SequenceSettings,
        is_sequence_view,
        sequence_settings,
    )
    from feast_sequence.definitions.use_case import (
        FromRequest,
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
        CorruptSequenceError,
        FeastSequenceError,
        PartialPushError,
        SequenceConfigurationError,
        SequenceDefinitionError,
        SequenceInputError,
        SequenceRequestError,
        SequenceStoreError,
        SequenceStoreUnavailableError,
        SequenceValidationError,
    )
    from feast_sequence.monitoring.erasure import ErasureResult, erase
    from feast_sequence.online.provider import SequenceProvider
    from feast_sequence.online.push import push, push_async
    from feast_sequence.online.training_data import get_training_data
    from feast_sequence.serving.featurize import Jagged, to_jagged, to_numpy, to_tensors

#: Each public name's module, imported on first use: importing the package (as ``feast-sequence
#: --help`` does, or Feast resolving ``feast_sequence.SequenceProvider``) does not import Feast,
#: Spark or the store until a name is used.
_PUBLIC = {
    "feast_sequence.definitions.enrichment": (
        "Enrichment",
        "EnrichmentCache",
        "enrich",
    ),
    "feast_sequence.definitions.settings": (
        "MAX_LENGTH_CAP",
        "EventField",
        "SequenceSettings",
        "is_sequence_view",
        "sequence_settings",
    ),
    "feast_sequence.definitions.view": ("SequenceFeatureView",),
    "feast_sequence.errors": (
        "CorruptSequenceError",
        "FeastSequenceError",
        "PartialPushError",
        "SequenceConfigurationError",
        "SequenceDefinitionError",
        "SequenceInputError",
        "SequenceRequestError",
        "SequenceStoreError",
        "SequenceStoreUnavailableError",
        "SequenceValidationError",
    ),
    "feast_sequence.monitoring.erasure": (
        "ErasureResult",
        "erase",
    ),
    "feast_sequence.online.provider": ("SequenceProvider",),
    "feast_sequence.online.push": (
        "push",
        "push_async",
    ),
    "feast_sequence.online.training_data": ("get_training_data",),
    "feast_sequence.serving.featurize": (
        "Jagged",
        "to_jagged",
        "to_numpy",
        "to_tensors",
    ),
    "feast_sequence.definitions.use_case": (
        "FromRequest",
        "Limits",
        "Operator",
        "Order",
        "OutputFormat",
        "Padding",
        "SequenceSpec",
        "SequenceUseCase",
        "UseCaseSettings",
        "Where",
        "is_use_case",
        "use_case_settings",
    ),
}
_MODULE_OF: typing.Dict[str, str] = {name: module for module, names in _PUBLIC.items() for name in names}


def __getattr__(name: str) -> typing.Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'feast_sequence' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> typing.List[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "CorruptSequenceError",
    "Enrichment",
    "EnrichmentCache",
    "ErasureResult",
    "EventField",
    "FeastSequenceError",
    "FromRequest",
    "Jagged",
    "Limits",
    "MAX_LENGTH_CAP",
    "Operator",
    "Order",
    "OutputFormat",
    "Padding",
    "PartialPushError",
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
    "erase",
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
