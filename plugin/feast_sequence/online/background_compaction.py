"""Compaction after the push has answered: one worker thread per store, fed the sequences whose tails
a push found at ``compact_after``.

A push's append is what a reader waits for; the compaction it triggers (a snapshot and a
compare-and-set, storage/compaction.py) only saves memory and read time later, so it runs here, after
the push returned. It stays safe late: COMPACT commits only if nothing wrote the sequence since its
snapshot (the version token), and one that lost that race leaves the tail, which the next append
finds at the threshold again. The tail stays bounded all the same: a push compacts inline any tail
at twice the threshold (``compact_inline_from``), and when this queue is full.

The queue coalesces: a sequence queued twice is compacted once. Errors are never swallowed: each is
logged and counted (``feast_sequence_compaction_errors_total``), and the first is raised by the
store's next push, before it writes anything, or by ``drain``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import SequenceStoreError
from feast_sequence.serving import metrics
from feast_sequence.storage.compaction import compact
from feast_sequence.storage.drivers import drive
from feast_sequence.storage.keys import SequenceKeys
from feast_sequence.storage.redis_io import replica_acks, retry_policy, run_round_trip

_logger = logging.getLogger(__name__)

#: Sequences waiting at most; a push compacts inline what would go past it, so a worker that falls
#: behind (a slow Redis) slows the pushes down instead of letting tails or this queue grow.
MAX_QUEUED_SEQUENCES = 100_000


def compact_inline_from(settings: SequenceSettings, compact_after: int) -> int:
    """The tail size from which a push compacts before it answers: twice the threshold
    (``tails_to_compact``'s), so a tail never holds much more than that whatever the worker does."""
    return 2 * min(compact_after, settings.max_length)


@dataclass
class _Job:
    """The queued sequences of one view, with the newest settings and online config a push gave."""

    settings: SequenceSettings
    online_config: Any
    keys: Set[SequenceKeys] = field(default_factory=set)


class BackgroundCompactions:
    """A store's compaction queue and its worker thread (started by the first ``submit``)."""

    def __init__(self, client_for: Callable[[Any], Any]) -> None:
        self._client_for = client_for  # online config -> the store's synchronous Redis client
        self._ready = threading.Condition()
        self._queued: Dict[Tuple[str, str], _Job] = {}
        self._count = 0  # sequences queued
        self._busy = False
        self._failure: Optional[SequenceStoreError] = None
        self._worker: Optional[threading.Thread] = None

    def submit(
        self, project: str, settings: SequenceSettings, online_config: Any, keys: List[SequenceKeys]
    ) -> List[SequenceKeys]:
        """Queue ``keys`` for compaction; returns those the full queue refused (compact them now)."""
        with self._ready:
            room = max(0, MAX_QUEUED_SEQUENCES - self._count)
            job = self._queued.get((project, settings.view_name))
            if job is None:
                job = self._queued[(project, settings.view_name)] = _Job(settings, online_config)
            job.settings, job.online_config = settings, online_config
            before = len(job.keys)
            job.keys.update(keys[:room])
            self._count += len(job.keys) - before
            self._start_worker()
            self._ready.notify_all()
        return keys[room:]

    def raise_failure(self, consequence: str = "") -> None:
        """Raise (once) the first background compaction error since the last one raised, with
        ``consequence`` (what the caller did not do) added to its message."""
        with self._ready:
            failure, self._failure = self._failure, None
        if failure is not None:
            raise SequenceStoreError(f"{failure} {consequence}".rstrip()) from failure.__cause__

    def drain(self, timeout_seconds: Optional[float] = None) -> None:
        """Wait until every queued sequence is compacted (or failed), then raise the first failure.
        ``timeout_seconds``: give up waiting after it (a ``SequenceStoreError``)."""
        with self._ready:
            idle = self._ready.wait_for(lambda: not self._queued and not self._busy, timeout_seconds)
        if not idle:
            raise SequenceStoreError(
                f"Background compaction still had work after {timeout_seconds} s; its tails are intact "
                "and the next push or `feast-sequence compact` compacts them."
            )
        self.raise_failure()

    def _start_worker(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return  # (a forked child has no thread: it starts its own)
        self._worker = threading.Thread(
            target=_work, args=(weakref.ref(self),), name="feast-sequence-compaction", daemon=True
        )
        self._worker.start()
        atexit.register(_drain_at_exit, weakref.ref(self))

    def _next(self) -> Optional[List[_Job]]:
        """The queued jobs, all at once (None after a second of nothing to do)."""
        with self._ready:
            self._busy = False
            self._ready.notify_all()
            if not self._ready.wait_for(lambda: bool(self._queued), timeout=1.0):
                return None
            jobs, self._queued, self._count, self._busy = list(self._queued.values()), {}, 0, True
            return jobs

    def _run(self, job: _Job) -> None:
        settings, online = job.settings, job.online_config
        try:
            client = self._client_for(online)
            operation = compact(settings, sorted(job.keys), retry_policy(online), replica_acks(online))
            compacted = drive(operation, partial(run_round_trip, client))
        except Exception as error:  # counted, logged and raised by the next push: never dropped
            metrics.COMPACTION_ERRORS.labels(settings.view_name).inc()
            _logger.error(
                "Background compaction of %d sequence(s) of view '%s' failed; their tails are intact",
                len(job.keys),
                settings.view_name,
                exc_info=True,
            )
            failure = SequenceStoreError(
                f"Background compaction of {len(job.keys)} sequence(s) of view '{settings.view_name}' failed "
                f"({type(error).__name__}: {error}). Their tails are intact: nothing was lost, and the next "
                "push to each compacts it again."
            )
            failure.__cause__ = error
            with self._ready:
                self._failure = self._failure or failure
            return
        metrics.COMPACTED_SEQUENCES.labels(settings.view_name, "background").inc(compacted)


def _work(compactions: "weakref.ReferenceType[BackgroundCompactions]") -> None:
    """The worker: compacts what is queued until its store is gone (a weak reference, so a dropped
    store does not live on through its thread)."""
    while True:
        owner = compactions()
        if owner is None:
            return
        jobs = owner._next()
        for job in jobs or ():
            owner._run(job)
        del owner


def _drain_at_exit(compactions: "weakref.ReferenceType[BackgroundCompactions]") -> None:
    """A short script's last push still gets its compaction before the interpreter ends."""
    owner = compactions()
    if owner is not None:
        try:
            owner.drain(timeout_seconds=10.0)
        except SequenceStoreError:
            _logger.error("Background compaction at exit failed", exc_info=True)
