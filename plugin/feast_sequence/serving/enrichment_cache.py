"""The serving-time enrichment cache: looked-up values of a regular view kept in the serving process.

One online store instance owns one :class:`EnrichmentCaches`, which holds a cache per enrichment
lookup (project, view, join key, features) that declares ``EnrichmentCache``. Staleness is bounded
by a TTL counted from *before* the lookup was sent, so a served value is never older than
``ttl_seconds`` (plus nothing: Redis answered after that instant). A TTL, rather than Redis's
server-assisted invalidation (``CLIENT TRACKING``), because lookups are ``EVALSHA``/pipelined
``HMGET``s that redis-py's client-side cache does not cover, it needs RESP3 connections Feast does
not open, and an invalidation lost on a reconnect would leave a value stale without bound.

The structure is cachetools' ``TLRUCache`` (per-entry expiry, least-recently-used eviction at
``max_entries``). It is not thread-safe, and ``feast serve`` runs sync requests in threads, so each
cache has a lock; it is held only between round trips, never across one, so the async driver cannot
deadlock on it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from cachetools import TLRUCache

from feast_sequence.definitions.enrichment import Enrichment, EnrichmentCache
from feast_sequence.serving import metrics

#: A cached lookup: the values of the enrichment's features, or None for a key with no value.
Row = Optional[Tuple[Any, ...]]
_ABSENT = object()


class _Entries(TLRUCache):  # type: ignore[type-arg]
    """A ``TLRUCache`` whose values are ``(expires_at, row)``, counting what it drops and why."""

    def __init__(self, max_entries: int, clock: Callable[[], float]):
        super().__init__(max_entries, ttu=lambda _key, value, _now: value[0], timer=clock)
        self.evicted = 0
        self.expired = 0

    def popitem(self) -> Any:
        item = super().popitem()
        self.evicted += 1
        return item

    def expire(self, time: Optional[float] = None) -> Any:
        expired = super().expire(time)
        self.expired += len(expired)
        return expired


class CachedLookup:
    """The cache of one enrichment lookup."""

    def __init__(self, label: str, settings: EnrichmentCache, clock: Callable[[], float]):
        self.label = label
        self.settings = settings
        self.clock = clock
        self._entries = _Entries(settings.max_entries, clock)
        self._lock = threading.Lock()

    def split(self, keys: Sequence[Any]) -> Tuple[Dict[Any, Row], List[Any]]:
        """The cached rows of ``keys`` (None for keys known to have no value), and the keys to look up."""
        cached: Dict[Any, Row] = {}
        missing: List[Any] = []
        entries = self._entries
        with self._lock, entries.timer:  # one clock reading for the whole batch
            for key in keys:
                entry = entries.get(key, _ABSENT)
                if entry is _ABSENT:
                    missing.append(key)
                else:
                    cached[key] = entry[1]
        counters = metrics.enrichment_cache_counters(self.label)
        if cached:
            counters.hits.inc(len(cached))
        if missing:
            counters.misses.inc(len(missing))
        return cached, missing

    def put(self, sent_at: float, keys: Sequence[Any], found: Mapping[Any, Tuple[Any, ...]]) -> None:
        """Cache the lookup of ``keys`` sent at ``sent_at`` (this cache's clock); ``found`` holds the
        keys that had a value."""
        expires = sent_at + self.settings.ttl_seconds
        entries = self._entries
        with self._lock, entries.timer as now:
            if not now < expires:  # the round trip outlasted the TTL: nothing to keep
                return
            evicted, expired = entries.evicted, entries.expired
            for key in keys:
                entries[key] = (expires, found.get(key))
            evicted, expired = entries.evicted - evicted, entries.expired - expired
        counters = metrics.enrichment_cache_counters(self.label)
        if evicted:
            counters.evicted_size.inc(evicted)
        if expired:
            counters.evicted_expired.inc(expired)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class EnrichmentCaches:
    """The enrichment caches of one online store instance, made on first use.

    ``clock`` (seconds, monotonic by default) measures the TTLs; tests replace it before the first
    request to move time without sleeping.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._caches: Dict[Tuple[str, Enrichment, EnrichmentCache], CachedLookup] = {}
        self._lock = threading.Lock()

    def lookup(self, project: str, lookup: Enrichment, settings: EnrichmentCache) -> CachedLookup:
        """The cache of ``lookup`` (an enrichment without prefix) under ``settings``: a use case that
        changes its cache settings gets a fresh cache."""
        key = (project, lookup, settings)
        cache = self._caches.get(key)
        if cache is None:
            with self._lock:
                cache = self._caches.setdefault(key, CachedLookup(lookup.view, settings, self.clock))
        return cache

    def clear(self) -> None:
        """Forget every cached value (the caches stay, empty)."""
        with self._lock:
            self._caches.clear()

    def __len__(self) -> int:
        return len(self._caches)
