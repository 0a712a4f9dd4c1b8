"""Prometheus metrics of the serving pipeline, per use case and view, and of pushes, per view.

They are registered with ``prometheus_client`` after ``feast.metrics`` has set up its multiprocess
directory, so ``feast serve --metrics`` exposes them on its metrics port next to Feast's own, from
every worker. In a plain Python process they live in the default registry.
"""

from __future__ import annotations

import time
from enum import Enum
from functools import lru_cache
from typing import Any, Dict, NamedTuple, Optional

import numpy as np

from feast_sequence.lazy_metrics import LazyMetrics


class Stage(str, Enum):
    """A timed stage of a use case's request: ``STAGE_SECONDS``'s ``stage`` label (the value)."""

    RETRIEVE = "retrieve"
    FILTER = "filter"
    SIZE = "size"
    ENRICH = "enrich"
    TRANSFORM = "transform"  # on-demand feature views
    FEATURIZE = "featurize"


class Limit(str, Enum):
    """A use case limit a request was refused by: ``LIMIT_REJECTIONS``'s ``limit`` label (the value,
    the ``Limits`` field's name)."""

    MAX_ENTITIES = "max_entities"
    TIME_BUDGET_MS = "time_budget_ms"


_NAMES = (
    "STAGE_SECONDS",
    "SEQUENCE_LENGTH",
    "EMPTY_SEQUENCES",
    "NEWEST_AGE_SECONDS",
    "ENRICHMENT_MISSES",
    "REQUEST_ERRORS",
    "LIMIT_REJECTIONS",
    "EXPIRED_PUSHED_EVENTS",
    "ERASED_EVENTS_DROPPED",
    "COMPACTED_SEQUENCES",
    "COMPACTION_ERRORS",
    "ENRICHMENT_CACHE_HITS",
    "ENRICHMENT_CACHE_MISSES",
    "ENRICHMENT_CACHE_EVICTIONS",
)


def _define(prometheus: Any) -> Dict[str, Any]:
    Counter, Histogram = prometheus.Counter, prometheus.Histogram
    STAGE_SECONDS = Histogram(
        "feast_sequence_stage_seconds",
        "Time spent in each serving stage of a use case's request",
        ["use_case", "stage"],
        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    )
    SEQUENCE_LENGTH = Histogram(
        "feast_sequence_length",
        "Events returned per sequence (per entity row, after filtering and sizing)",
        ["use_case", "view"],
        buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10000),
    )
    EMPTY_SEQUENCES = Counter("feast_sequence_empty_total", "Sequences returned with no event", ["use_case", "view"])
    NEWEST_AGE_SECONDS = Histogram(
        "feast_sequence_newest_event_age_seconds",
        "Age of the newest returned event of a sequence at serving time",
        ["use_case", "view"],
        buckets=(1, 10, 60, 600, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400),
    )
    ENRICHMENT_MISSES = Counter(
        "feast_sequence_enrichment_misses_total",
        "Events whose enrichment key had no value in the joined view",
        ["use_case", "view", "enrichment"],
    )
    REQUEST_ERRORS = Counter(
        "feast_sequence_request_errors_total",
        "Use case requests that failed, by error type",
        ["use_case", "error"],
    )
    LIMIT_REJECTIONS = Counter(
        "feast_sequence_limit_rejections_total",
        "Use case requests refused by one of the use case's limits",
        ["use_case", "limit"],
    )
    EXPIRED_PUSHED_EVENTS = Counter(
        "feast_sequence_expired_pushed_events_total",
        "Pushed events already older than their view's TTL when written (the store drops them)",
        ["view"],
    )
    ERASED_EVENTS_DROPPED = Counter(
        "feast_sequence_erased_events_dropped_total",
        "Events a writer sent for an erased entity, at or before its erasure time (the store drops them)",
        ["view"],
    )
    COMPACTED_SEQUENCES = Counter(
        "feast_sequence_compacted_sequences_total",
        "Sequences a writer compacted: 'inline' before its push answered, 'background' after",
        ["view", "where"],
    )
    COMPACTION_ERRORS = Counter(
        "feast_sequence_compaction_errors_total",
        "Background compactions that failed (logged, and raised by the writer's next push)",
        ["view"],
    )
    ENRICHMENT_CACHE_HITS = Counter(
        "feast_sequence_enrichment_cache_hits_total",
        "Enrichment keys served from the serving process's cache, by joined view",
        ["enrichment"],
    )
    ENRICHMENT_CACHE_MISSES = Counter(
        "feast_sequence_enrichment_cache_misses_total",
        "Enrichment keys of cached enrichments looked up in Redis (absent or expired), by joined view",
        ["enrichment"],
    )
    ENRICHMENT_CACHE_EVICTIONS = Counter(
        "feast_sequence_enrichment_cache_evictions_total",
        "Cached enrichment keys dropped: 'size' (max_entries reached) or 'expired' (ttl_seconds passed)",
        ["enrichment", "reason"],
    )
    return {name: value for name, value in locals().items() if name in _NAMES}


_METRICS = LazyMetrics(__name__, _NAMES, _define)
_metrics = _METRICS.all


def __getattr__(name: str) -> Any:
    """``metrics.STAGE_SECONDS`` and the others, made on first access (feast_sequence/lazy_metrics.py)."""
    return _METRICS.attribute(name)


class CacheCounters(NamedTuple):
    hits: Any
    misses: Any
    evicted_size: Any
    evicted_expired: Any


@lru_cache(maxsize=None)
def enrichment_cache_counters(enrichment: str) -> CacheCounters:
    """The cache counters of one joined view, labelled once (``labels()`` costs a lock and a lookup)."""
    metrics = _metrics()
    evictions = metrics["ENRICHMENT_CACHE_EVICTIONS"]
    return CacheCounters(
        metrics["ENRICHMENT_CACHE_HITS"].labels(enrichment),
        metrics["ENRICHMENT_CACHE_MISSES"].labels(enrichment),
        evictions.labels(enrichment, "size"),
        evictions.labels(enrichment, "expired"),
    )


def observe_all(histogram: Any, values: np.ndarray) -> None:
    """``histogram.observe(v)`` for every value, counted per bucket with numpy: one observe per
    sequence was 13% of a 100-customer request's CPU (each is two locked writes to a multiprocess
    file). Uses the labelled child's ``_upper_bounds``, ``_buckets`` and ``_sum`` (prometheus_client's
    layout since 0.4, checked against ``observe`` in tests/test_serving_metrics.py)."""
    if not len(values):
        return
    bucket = np.searchsorted(np.asarray(histogram._upper_bounds, dtype=float), values, side="left")
    for index, count in enumerate(np.bincount(bucket, minlength=len(histogram._upper_bounds)).tolist()):
        if count:
            histogram._buckets[index].inc(count)
    histogram._sum.inc(float(np.sum(values)))


def observe_sequences(use_case: str, view: str, lengths: np.ndarray, newest_seconds: Optional[np.ndarray]) -> None:
    metrics = _metrics()
    observe_all(metrics["SEQUENCE_LENGTH"].labels(use_case, view), lengths.astype(float))
    empty = int((lengths == 0).sum())
    if empty:
        metrics["EMPTY_SEQUENCES"].labels(use_case, view).inc(empty)
    if newest_seconds is not None and len(newest_seconds):
        ages = np.maximum(0.0, time.time() - newest_seconds.astype(float))
        observe_all(metrics["NEWEST_AGE_SECONDS"].labels(use_case, view), ages)
