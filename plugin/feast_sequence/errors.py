"""The exception tree of feast-sequence: one root, one branch per situation."""

from __future__ import annotations


class FeastSequenceError(Exception):
    """Root of every error raised by feast-sequence."""


class SequenceDefinitionError(FeastSequenceError, ValueError):
    """A sequence feature view is defined wrongly (bad max_length, unknown dedup_by field, ...)."""


class SequenceInputError(FeastSequenceError, ValueError):
    """Pushed or source events are invalid; the whole batch was rejected and nothing was written."""


class SequenceRequestError(FeastSequenceError, ValueError):
    """An online request exceeds a configured limit (for example entities per request)."""


class SequenceStoreError(FeastSequenceError):
    """The Redis sequence store failed (connection, script, configuration)."""


class SequenceStoreUnavailableError(SequenceStoreError):
    """Redis could not be reached (down, restarting, failing over, timing out), refused a write for
    lack of replicas, or fewer replicas than ``min_replica_acks`` acknowledged it. Retriable: every
    write is idempotent, so re-sending the same events gives the same state."""


class SequenceConfigurationError(FeastSequenceError, ValueError):
    """feature_store.yaml does not configure what sequence views need (provider, online store)."""


class SequenceValidationError(FeastSequenceError):
    """A data validation gate failed; the batch it guarded was not written."""
