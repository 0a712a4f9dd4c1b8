"""Prometheus metrics of serving logs, made on first use like ``serving/metrics.py``'s."""

from __future__ import annotations

from enum import Enum
from typing import Any, Dict

from feast_sequence.lazy_metrics import LazyMetrics


class Drop(str, Enum):
    """Why logged rows were dropped: ``LOG_ROWS_DROPPED``'s ``reason`` label (the value)."""

    QUEUE_FULL = "queue_full"  # the flusher is behind: the request does not wait for it
    WRITE_FAILED = "write_failed"  # the destination refused the write


def _define(prometheus: Any) -> Dict[str, Any]:
    return {
        "LOG_ROWS_WRITTEN": prometheus.Counter(
            "feast_sequence_log_rows_written_total", "Served rows written to a use case's log destination", ["use_case"]
        ),
        "LOG_ROWS_DROPPED": prometheus.Counter(
            "feast_sequence_log_rows_dropped_total",
            "Served rows sampled for logging but dropped, by reason",
            ["use_case", "reason"],
        ),
    }


_METRICS = LazyMetrics(__name__, ("LOG_ROWS_WRITTEN", "LOG_ROWS_DROPPED"), _define)


def __getattr__(name: str) -> Any:
    return _METRICS.attribute(name)
