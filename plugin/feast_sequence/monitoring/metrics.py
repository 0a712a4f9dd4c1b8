"""Prometheus metrics of serving logs, made on first use like ``serving/metrics.py``'s."""

from __future__ import annotations

from enum import Enum
from functools import lru_cache
from typing import Any, Dict


class Drop(str, Enum):
    """Why logged rows were dropped: ``LOG_ROWS_DROPPED``'s ``reason`` label (the value)."""

    QUEUE_FULL = "queue_full"  # the flusher is behind: the request does not wait for it
    WRITE_FAILED = "write_failed"  # the destination refused the write


_NAMES = ("LOG_ROWS_WRITTEN", "LOG_ROWS_DROPPED")


@lru_cache(maxsize=None)
def _metrics() -> Dict[str, Any]:
    from feast import metrics as _feast_metrics  # noqa: F401  (sets the multiprocess directory)
    from prometheus_client import Counter

    LOG_ROWS_WRITTEN = Counter(
        "feast_sequence_log_rows_written_total", "Served rows written to a use case's log destination", ["use_case"]
    )
    LOG_ROWS_DROPPED = Counter(
        "feast_sequence_log_rows_dropped_total",
        "Served rows sampled for logging but dropped, by reason",
        ["use_case", "reason"],
    )
    return {name: value for name, value in locals().items() if name in _NAMES}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return _metrics()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
