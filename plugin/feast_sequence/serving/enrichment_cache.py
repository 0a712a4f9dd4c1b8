"""The serving-time enrichment cache: looked-up values of a regular view kept in the serving process.

One online store instance owns one :class:`EnrichmentCaches`, which holds a cache per enrichment
lookup (project, view, join key, features) that declares ``EnrichmentCache``. Staleness is bounded
by a TTL counted from *before* the lookup was sent, so a served value is never older than
``ttl_seconds``. A TTL rather than Redis's server-assisted invalidation (``CLIENT TRACKING``):
lookups are ``EVALSHA``s (or pipelined ``HMGET``s) that redis-py's client-side cache does not cover,
it needs RESP3 connections Feast does not open, and an invalidation lost on a reconnect would leave
a value stale without bound. A TTL works the same with pipelines, scripts and Redis Cluster.

Values are kept in *generations*: a plain dict of rows that all expire together, ``ttl_seconds``
after the first lookup that filled it was sent; a lookup sent before a generation started never
enters it. A request checks its thousands of keys with C-speed dict lookups: per-key expiry and LRU
bookkeeping (cachetools ``TLRUCache`` per key) cost 14 ms for the 4,300 items of the benchmark's
100-customer request, more than the plain read it enriches. The generations themselves live in a
cachetools ``TLRUCache`` (expiry at their own deadline, at most two, the least recently used
evicted), each holding up to half of ``max_entries``: a full generation starts the next one while
the previous stays readable until it expires or is evicted, so a full cache does not empty at once.

``feast serve`` runs sync requests in threads, so writes take a lock; it is held only between round
trips, never across one, so the async driver cannot deadlock on it.
"""

from __future__ import annotations

import itertools
import threading
import time
from itertools import repeat
from operator import is_
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from cachetools import TLRUCache

from feast_sequence.definitions.enrichment import Enrichment, EnrichmentCache
from feast_sequence.serving import metrics

#: A cached lookup: the values of the enrichment's features, or None for a key with no value.
Row = Optional[Tuple[Any, ...]]

#: What :meth:`CachedLookup.rows` gives for a key the cache does not hold.
NOT_CACHED: Any = object()


class _Generation:
    """Rows read from Redis by lookups sent at or after ``started`` (the cache's clock)."""

    __slots__ = ("started", "rows")

    def __init__(self, started: float):
        self.started = started
        self.rows: Dict[Any, Row] = {}


class _Generations(TLRUCache):  # type: ignore[type-arg]
    """At most two generations, each dropped ``ttl_seconds`` after it started; counts the rows it
    drops and why."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float]):
        super().__init__(2, ttu=lambda _key, generation, _now: generation.started + ttl_seconds, timer=clock)
        self.evicted = 0
        self.expired = 0

    def popitem(self) -> Any:
        key, generation = super().popitem()
        self.evicted += len(generation.rows)
        return key, generation

    def expire(self, time: Optional[float] = None) -> Any:
        expired = super().expire(time)
        self.expired += sum(len(generation.rows) for _, generation in expired)
        return expired


class CachedLookup:
    """The cache of one enrichment lookup."""

    def __init__(self, label: str, settings: EnrichmentCache, clock: Callable[[], float]):
        self.label = label
        self.settings = settings
        self.clock = clock
        self._per_generation = max(1, settings.max_entries // 2)
        self._generations = _Generations(settings.ttl_seconds, clock)
        self._numbers = itertools.count()
        self._lock = threading.Lock()

    def _live(self) -> List[_Generation]:
        """The unexpired generations, newest first (read oldest first, so that the newest is the
        most recently used and the oldest is the one a third generation evicts)."""
        generations = self._generations
        with self._lock, generations.timer:
            generations.expire()
            return [generations[key] for key in sorted(generations)][::-1]

    def split(self, keys: Sequence[Any]) -> Tuple[Dict[Any, Row], List[Any]]:
        """The cached rows of ``keys`` (None for keys known to have no value), and the keys to look up."""
        rows, missing = self.rows(keys)
        cached = {key: row for key, row in zip(keys, rows) if row is not NOT_CACHED}
        return cached, [keys[position] for position in missing]

    def rows(self, keys: Sequence[Any]) -> Tuple[List[Any], List[int]]:
        """Each key's cached row in key order (None: known to have no value; ``NOT_CACHED``), and
        the positions of the keys not cached, to look up. One C-speed ``dict.get`` pass over the
        keys for the newest generation, Python only for the keys it lacks."""
        rows: List[Any] = [NOT_CACHED] * len(keys)
        missing = list(range(len(keys)))
        for generation in self._live():
            if not missing:
                break
            found = generation.rows.get
            if len(missing) == len(keys):
                rows = list(map(found, keys, repeat(NOT_CACHED)))
            else:
                for position in missing:
                    rows[position] = found(keys[position], NOT_CACHED)
            is_missing = np.fromiter(map(is_, rows, repeat(NOT_CACHED)), dtype=bool, count=len(rows))
            missing = np.flatnonzero(is_missing).tolist()
        counters = metrics.enrichment_cache_counters(self.label)
        if len(keys) > len(missing):
            counters.hits.inc(len(keys) - len(missing))
        if missing:
            counters.misses.inc(len(missing))
        return rows, missing

    def put(self, sent_at: float, keys: Sequence[Any], found: Mapping[Any, Tuple[Any, ...]]) -> None:
        """Cache the lookup of ``keys`` sent at ``sent_at`` (this cache's clock); ``found`` holds the
        keys that had a value."""
        self.put_rows(sent_at, keys, list(map(found.get, keys)))

    def put_rows(self, sent_at: float, keys: Sequence[Any], rows: Sequence[Row]) -> None:
        """Cache the lookup of ``keys`` sent at ``sent_at`` (this cache's clock): ``rows`` holds each
        key's values, in key order, None for a key without a value."""
        generations = self._generations
        with self._lock, generations.timer as now:
            if not now < sent_at + self.settings.ttl_seconds:  # the round trip outlasted the TTL
                return
            evicted, expired = generations.evicted, generations.expired
            generations.expire(now)
            newest = generations[max(generations)] if len(generations) else None
            if newest is not None and sent_at < newest.started:
                return  # read before the newest generation started: it would outlive its bound there
            start = 0
            while start < len(keys):
                if newest is None or len(newest.rows) >= self._per_generation:
                    newest = _Generation(sent_at)
                    generations[next(self._numbers)] = newest
                end = start + self._per_generation - len(newest.rows)
                newest.rows.update(zip(keys[start:end], rows[start:end]))
                start = end
            evicted, expired = generations.evicted - evicted, generations.expired - expired
        counters = metrics.enrichment_cache_counters(self.label)
        if evicted:
            counters.evicted_size.inc(evicted)
        if expired:
            counters.evicted_expired.inc(expired)

    def __len__(self) -> int:
        return sum(len(generation.rows) for generation in self._live())


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
