"""Pushed events already past their view's TTL when written.

The store drops them on arrival (the TTL counts from now), so the push succeeds and reads stay
empty: the classic surprise of loading old data into a view with a TTL. Every such event is counted
in ``feast_sequence_expired_pushed_events_total``; the first push of each view that holds any is
logged as a warning, once per process, so a steady stream of late events does not flood the log.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Optional, Sequence, Set, Tuple

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.serving import metrics

logger = logging.getLogger(__name__)

#: (project, view) pairs already warned about in this process.
_warned: Set[Tuple[str, str]] = set()


def expired_count(scores_us: Sequence[int], ttl_us: Optional[int], now_us: int) -> int:
    """How many of the events (timestamps in µs) are older than ``now_us - ttl_us``; 0 without a TTL."""
    if not ttl_us or not scores_us:
        return 0
    horizon = now_us - ttl_us
    if min(scores_us) >= horizon:  # the usual case, one pass without counting
        return 0
    return sum(1 for score in scores_us if score < horizon)


def report_expired(project: str, settings: SequenceSettings, scores_us: Sequence[int]) -> int:
    """Count (and, once per view and process, log) the written events already past the view's TTL."""
    expired = expired_count(scores_us, settings.ttl_us, time.time_ns() // 1000)
    if not expired:
        return 0
    metrics.EXPIRED_PUSHED_EVENTS.labels(settings.view_name).inc(expired)
    if (project, settings.view_name) not in _warned:
        _warned.add((project, settings.view_name))
        logger.warning(
            "Sequence view '%s': %d of %d pushed events are older than its ttl (%s), so the store "
            "dropped them and reads will not return them. Push recent events, or give the view a "
            "longer ttl (or none). Logged once per view; feast_sequence_expired_pushed_events_total "
            "counts them all.",
            settings.view_name,
            expired,
            len(scores_us),
            timedelta(microseconds=settings.ttl_us or 0),
        )
    return expired
