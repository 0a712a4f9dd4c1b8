"""The exception tree of feast-sequence: one root, one branch per situation.

Every error is a :class:`feast.errors.FeastError`, so Feast's HTTP feature server (`feast serve`)
answers it with its ``http_status`` instead of 500: a client can tell a bad request (422, 413) from
a retriable outage (503, 429).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from feast.errors import FeastError


class FeastSequenceError(FeastError):
    """Root of every error raised by feast-sequence."""

    http_status: int = 500
    """The status Feast's feature server answers with (``http_status_code()``)."""

    def http_status_code(self) -> int:
        return self.http_status


class SequenceDefinitionError(FeastSequenceError, ValueError):
    """A sequence feature view is defined wrongly (bad max_length, unknown dedup_by field, ...)."""

    # Over HTTP it answers a request naming features a view does not serve, or a use case that does
    # not fit its views: the request or definition is wrong, resending it unchanged cannot help.
    http_status = 422


class SequenceInputError(FeastSequenceError, ValueError):
    """Pushed or source events are invalid; the whole batch was rejected and nothing was written."""

    http_status = 422


class SequenceRequestError(FeastSequenceError, ValueError):
    """An online request exceeds a configured limit (for example entities per request).

    Its HTTP status is 413 (too many entities: split the request) unless the raise site says
    otherwise: 429 for a time budget, which is a load signal a client may back off and retry.
    """

    http_status = 413

    def __init__(self, message: str, *, http_status: Optional[int] = None):
        super().__init__(message)
        if http_status is not None:
            self.http_status = http_status

    def __reduce__(self) -> Tuple[Any, ...]:
        # Exceptions pickle as cls(*args): keep the status across processes (Spark, multiprocessing).
        return (_request_error, (type(self), str(self), self.http_status))


def _request_error(cls: type, message: str, http_status: int) -> SequenceRequestError:
    error: SequenceRequestError = cls(message, http_status=http_status)
    return error


class SequenceStoreError(FeastSequenceError):
    """The Redis sequence store failed (connection, script, configuration)."""


class CorruptSequenceError(SequenceStoreError):
    """A stored sequence failed its integrity check (a block's checksum, or a block or tail that does
    not decode): its bytes in Redis are damaged. Names the view, the entity and the Redis key when the
    read knows them; ``feast-sequence verify --repair`` rebuilds the entity from the offline source.
    Not retriable: the same bytes fail again (500)."""

    def __init__(
        self, message: str, *, view: Optional[str] = None, entity: Optional[str] = None, key: Optional[bytes] = None
    ):
        super().__init__(message)
        self.view = view
        self.entity = entity
        self.key = key

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_corrupt_error, (type(self), str(self), self.view, self.entity, self.key))


def _corrupt_error(
    cls: type, message: str, view: Optional[str], entity: Optional[str], key: Optional[bytes]
) -> CorruptSequenceError:
    error: CorruptSequenceError = cls(message, view=view, entity=entity, key=key)
    return error


class SequenceStoreUnavailableError(SequenceStoreError):
    """Redis could not be reached (down, restarting, failing over, timing out), refused a write for
    lack of replicas, or fewer replicas than ``min_replica_acks`` acknowledged it. Retriable: every
    write is idempotent, so re-sending the same events gives the same state."""

    http_status = 503


class PartialPushError(FeastSequenceError):
    """A push to online and offline stores failed after part of it was written; the message says
    exactly which views were written where (the offline write failed: a storage error, not the
    frame, which was checked for both destinations before anything was written)."""


class SequenceConfigurationError(FeastSequenceError, ValueError):
    """feature_store.yaml does not configure what sequence views need (provider, online store)."""

    # The server's own configuration is wrong: nothing a client can change (500).


class SequenceValidationError(FeastSequenceError):
    """A data validation gate failed; the batch it guarded was not written."""

    http_status = 422
