"""Writing batch-source events into the online store: `feast materialize` and the offline jobs.

The store merges every write under the sequence semantics, so batch writes never shrink a sequence
and never disturb real-time events: they only add events (or, for corrections, replace one time
range atomically per entity). Over-including events is always safe, so the selections below keep
ties rather than break them: the store breaks them exactly as it does online.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Callable, ContextManager, Iterable, Iterator, List, Optional, Set, Tuple, Union

import pandas as pd

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.serving import metrics
from feast_sequence.storage.append import encode_frame, erased_dropped, plan_append, tails_to_compact
from feast_sequence.storage.client import redis_client
from feast_sequence.storage.compaction import compact, resend_refused
from feast_sequence.storage.drivers import drive
from feast_sequence.storage.index_enrich import plan_index_enrichment
from feast_sequence.storage.lookup import one_call_per_key
from feast_sequence.storage.redis_io import Access, execute, replica_acks, retry_policy, run_round_trip

_RANK = "__fsq_rank"


@dataclass(frozen=True)
class IndexTarget:
    """Everything an executor needs to write one view's events (small and picklable)."""

    online_config: Any
    project: str
    settings: SequenceSettings
    serialization_version: int = 3  # of regular views' entity keys, for index-time enrichment lookups


@dataclass(frozen=True)
class Written:
    """What a batch write sent: its events, and how many of them the store dropped because their
    entity was erased up to their time (storage/scripts.APPEND)."""

    events: int = 0
    erased: int = 0

    def __add__(self, other: "Written") -> "Written":
        return Written(self.events + other.events, self.erased + other.erased)


@dataclass(frozen=True)
class IndexSummary:
    events_read: int
    events_written: int
    seconds: float
    events_erased: int = 0  # of those written, dropped by the store: their entity was erased

    @property
    def events_per_second(self) -> float:
        return self.events_written / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        erased = f", {self.events_erased:,} of them dropped as erased" if self.events_erased else ""
        return (
            f"{self.events_read:,} events read, {self.events_written:,} written{erased} in {self.seconds:.1f} s "
            f"({self.events_per_second:,.0f} events/s)"
        )


def write_frames(
    target: IndexTarget,
    frames: Iterable[pd.DataFrame],
    replace_range_us: Optional[Tuple[int, int]] = None,
    on_written: Optional[Callable[[int], None]] = None,
) -> Written:
    """Append the events of each frame, one pipeline per frame. Returns the events written (and
    those dropped as erased, also counted in ``feast_sequence_erased_events_dropped_total``), and
    tells ``on_written`` after each frame.

    With ``replace_range_us``, each entity's stored events in the range are removed in the same
    atomic call as its first events; an entity's events must then all go through one call of this
    function (the Spark writer partitions by entity key). Each append pipeline waits for the
    online store's ``min_replica_acks``, as pushes do.
    """

    client = redis_client(target.online_config)
    retry, acks = retry_policy(target.online_config), replica_acks(target.online_config)
    replaced: Set[bytes] = set()
    written = Written()
    for frame in frames:
        if frame.empty:
            continue
        lookups, enriched = plan_index_enrichment(
            target.settings,
            target.project,
            target.serialization_version,
            frame,
            one_call_per_key(target.online_config),
        )
        if lookups:
            frame = enriched(execute(client, lookups, "looking up index-time enrichments", retry))
        events = encode_frame(target.settings, frame)
        commands = plan_append(target.settings, target.project, events, replace_range_us, replaced)
        what = f"indexing {len(events)} event(s) of '{target.settings.view_name}'"
        replies = execute(client, commands, what, retry, acks, Access.WRITE)
        run = partial(run_round_trip, client)
        if replace_range_us is not None:
            replies = drive(resend_refused(target.settings, commands, replies, retry, acks), run)
        full = tails_to_compact(target.settings, commands, replies, target.online_config.compact_after)
        drive(compact(target.settings, full, retry, acks), run)
        erased = erased_dropped(replies)
        if erased:
            metrics.ERASED_EVENTS_DROPPED.labels(target.settings.view_name).inc(erased)
        written += Written(len(events), erased)
        if on_written is not None:
            on_written(len(events))
    return written


#: Shows a write's progress: given a function that returns the events written so far, a context
#: that follows it while the write runs (``feast_sequence.output.progress``).
Watch = Callable[[Callable[[], int]], ContextManager[Any]]


def write_spark(
    target: IndexTarget,
    events: Any,
    replace_range_us: Optional[Tuple[int, int]] = None,
    watch: Optional[Watch] = None,
) -> Written:
    """Write a Spark DataFrame of events from the executors: batched, one pipeline per Arrow batch.

    ``watch`` follows the events written so far: a Spark accumulator, which each task adds to when
    it ends."""
    from pyspark.sql import functions as F

    keys = [k for k, _ in target.settings.join_keys]
    # Each entity's events together: in one partition (required for replace_range_us, see
    # write_frames) and contiguous, so a batch makes one script call per entity, not per event.
    events = events.repartition(*keys).sortWithinPartitions(*keys)

    written = events.sparkSession.sparkContext.accumulator(0)

    def per_partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        done = write_frames(target, frames, replace_range_us, written.add)
        yield pd.DataFrame({"written": [done.events], "erased": [done.erased]})

    with watch(lambda: int(written.value)) if watch is not None else contextlib.nullcontext():
        partitions = events.mapInPandas(per_partition, "written long, erased long")
        total = partitions.agg(F.sum("written"), F.sum("erased")).collect()[0]
    return Written(int(total[0] or 0), int(total[1] or 0))


def write_local(target: IndexTarget, events: pd.DataFrame, chunk: int = 50_000) -> Written:
    """Write a pandas DataFrame of events from this process, one pipeline per chunk."""
    return write_frames(target, (events.iloc[i : i + chunk] for i in range(0, len(events), chunk)))


def identity_columns(settings: SequenceSettings) -> List[str]:
    if settings.dedup_by:
        return list(settings.dedup_by)
    return list(settings.field_names) + [settings.timestamp_field]


def newest_before_spark(settings: SequenceSettings, events: Any, before: datetime) -> Any:
    """Per entity, the events before ``before`` that can still be in its sequence once the events
    from ``before`` on are added: the latest version of each identity that has no newer version
    from ``before`` on, then the ``max_length`` newest of those.

    Ties are kept (``rank``, then ``dense_rank`` over timestamps), so this may select a few more
    events than needed but never fewer; the store resolves the rest exactly.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ts = F.col(settings.timestamp_field)
    keys = [k for k, _ in settings.join_keys]
    identity = keys + identity_columns(settings)
    older = events.filter(ts < F.lit(before))
    newer = events.filter(ts >= F.lit(before)).select(*identity).distinct()
    superseded = [older[c].eqNullSafe(newer[c]) for c in identity]
    older = older.join(newer, on=superseded, how="left_anti")
    latest = Window.partitionBy(*identity).orderBy(ts.desc())
    newest = Window.partitionBy(*keys).orderBy(ts.desc())
    older = older.withColumn(_RANK, F.rank().over(latest)).filter(F.col(_RANK) == 1).drop(_RANK)
    return older.withColumn(_RANK, F.dense_rank().over(newest)).filter(F.col(_RANK) <= settings.max_length).drop(_RANK)


def newest_before_pandas(settings: SequenceSettings, events: pd.DataFrame, before: datetime) -> pd.DataFrame:
    """The pandas twin of :func:`newest_before_spark`."""
    keys = [k for k, _ in settings.join_keys]
    identity = keys + identity_columns(settings)
    ts = pd.to_datetime(events[settings.timestamp_field], utc=True)
    newer = events.loc[ts >= pd.Timestamp(before), identity].drop_duplicates()
    older = events[ts < pd.Timestamp(before)].copy()
    older = older.merge(newer.assign(__newer=True), on=identity, how="left")
    older = older[older["__newer"].isna()].drop(columns=["__newer"])
    older["__ts"] = pd.to_datetime(older[settings.timestamp_field], utc=True)
    latest = older.groupby(identity, dropna=False)["__ts"].rank(method="min", ascending=False)
    older = older[latest == 1]
    newest = older.groupby(keys, dropna=False)["__ts"].rank(method="dense", ascending=False)
    return older[newest <= settings.max_length].drop(columns=["__ts"])


def timed(run: Callable[[], Tuple[int, Union[int, Written]]]) -> IndexSummary:
    """Run a job's body (returning events read, and written) and summarize it."""
    start = time.perf_counter()
    read, written = run()
    if isinstance(written, Written):
        return IndexSummary(read, written.events, time.perf_counter() - start, written.erased)
    return IndexSummary(read, written, time.perf_counter() - start)
