"""The serving layer: per-use-case shaping of shared sequences (filter, size, enrich, featurize).

Declare a use case with :class:`SequenceUseCase` in the feature repository; serve it with Feast's
``get_online_features`` / ``feast serve`` and train on it with ``get_historical_features``.
"""

from feast_sequence.serving.featurize import Jagged, to_jagged, to_numpy, to_tensors
from feast_sequence.serving.use_case import (
    Limits,
    SequenceSpec,
    SequenceUseCase,
    UseCaseSettings,
    Where,
    is_use_case,
    use_case_settings,
)

__all__ = [
    "Jagged",
    "Limits",
    "SequenceSpec",
    "SequenceUseCase",
    "UseCaseSettings",
    "Where",
    "is_use_case",
    "to_jagged",
    "to_numpy",
    "to_tensors",
    "use_case_settings",
]
