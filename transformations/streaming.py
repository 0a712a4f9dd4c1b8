"""Streaming indexer: every event of a stream (Kafka, files landing in a folder) appended to a view.

Spark Structured Streaming, one micro-batch at a time:

    spark-submit --packages org.apache.spark:spark-sql-kafka-0-10_2.13:4.3.0 \
        transformations/streaming.py --repo feature_repo --view customer_purchases \
        --kafka broker:9092 --topic purchases --checkpoint /checkpoints/customer_purchases
    feast-sequence stream --repo feature_repo --view customer_purchases \
        --files landing/purchases --format json --checkpoint /tmp/checkpoints/purchases --once

Every event of a micro-batch is appended, not only the newest per entity. A restarted job resumes
from its checkpoint and may replay the last micro-batch: appends are idempotent, so the replay changes
nothing. See docs/streaming.md.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from feast.value_type import ValueType

from feast_sequence.definitions.element_types import ELEMENT_TYPES
from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import FeastSequenceError, SequenceConfigurationError
from feast_sequence.offline.indexing import IndexSummary, IndexTarget, write_spark
from feast_sequence.transformations._job import JobContext, report, spark_submit

#: Builds the streaming DataFrame of a view's events (its join keys, event fields and timestamp
#: field) on the given Spark session: ``FileStream``, ``KafkaStream`` or any function of that shape.
EventStream = Callable[[Any, SequenceSettings], Any]

FILE_FORMATS = ("json", "parquet")

#: A column sources may add: where each record came from (its file, or its Kafka topic, partition
#: and offset), to name a bad record's position. Never written.
POSITION = "__fsq_position"

_EXCEPTION_LINE = re.compile(r"^(?:Caused by: )?([\w.$]+(?:Error|Exception): .+)$", re.M)


def _spark_type_name(value_type: ValueType) -> str:
    """The Spark type of one event's value: incoming timestamps are Spark timestamps (sequences
    store whole seconds, the table's type)."""
    return "timestamp" if value_type == ValueType.UNIX_TIMESTAMP else ELEMENT_TYPES[value_type].spark_type_name


def event_schema(settings: SequenceSettings) -> Any:
    """The Spark schema of a view's incoming events: join keys, event fields, timestamp field.

    Index-time enriched fields are not part of it: the writer adds them (``write_frames``).
    """
    from pyspark.sql.types import StructType

    columns: Dict[str, ValueType] = dict(settings.join_keys)
    for event_field in settings.event_fields:
        columns.setdefault(event_field.name, event_field.value_type)
    columns.setdefault(settings.timestamp_field, ValueType.UNIX_TIMESTAMP)
    # fromJson takes Spark's type names without a running session (a DDL string would need one).
    fields = [
        {"name": name, "type": _spark_type_name(kind), "nullable": True, "metadata": {}}
        for name, kind in columns.items()
    ]
    return StructType.fromJson({"type": "struct", "fields": fields})


@dataclass(frozen=True)
class FileStream:
    """Event files landing in a folder (Spark's file source), read with the view's schema.

    Move each file in whole (write it elsewhere, then rename it into the folder): Spark lists the
    folder at every trigger and may otherwise read a half-written file.
    """

    path: str
    file_format: str = "json"
    max_files_per_trigger: Optional[int] = None

    def __call__(self, spark: Any, settings: SequenceSettings) -> Any:
        if self.file_format not in FILE_FORMATS:
            raise SequenceConfigurationError(
                f"Streaming '{settings.view_name}': file format {self.file_format!r} is not supported; "
                f"use one of {', '.join(FILE_FORMATS)}."
            )
        from pyspark.sql import functions as F

        reader = spark.readStream.schema(event_schema(settings)).format(self.file_format)
        if self.max_files_per_trigger:
            reader = reader.option("maxFilesPerTrigger", self.max_files_per_trigger)
        events = reader.load(self.path)
        return events.withColumn(POSITION, F.col("_metadata.file_path"))


@dataclass(frozen=True)
class KafkaStream:
    """Kafka records whose value is one JSON event each (needs the spark-sql-kafka package).

    ``options`` are passed on as they are, e.g. ``("kafka.security.protocol", "SASL_SSL")``.
    """

    bootstrap_servers: str
    topic: str  # Kafka's `subscribe`: one topic, or several separated by commas
    starting_offsets: str = "latest"  # where a job without a checkpoint starts: latest, earliest or JSON
    fail_on_data_loss: bool = True
    max_offsets_per_trigger: Optional[int] = None
    options: Tuple[Tuple[str, str], ...] = ()

    def __call__(self, spark: Any, settings: SequenceSettings) -> Any:
        reader = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", self.bootstrap_servers)
            .option("subscribe", self.topic)
            .option("startingOffsets", self.starting_offsets)
            .option("failOnDataLoss", str(self.fail_on_data_loss).lower())
        )
        if self.max_offsets_per_trigger:
            reader = reader.option("maxOffsetsPerTrigger", self.max_offsets_per_trigger)
        for key, value in self.options:
            reader = reader.option(key, value)
        return parse_json_events(reader.load(), settings)


def parse_json_events(records: Any, settings: SequenceSettings) -> Any:
    """Records with a ``value`` column holding one JSON event each, as event rows.

    Unknown keys are ignored and missing fields are null. A record that is not JSON fails the
    micro-batch (``FAILFAST``): it is reported, never silently dropped.
    """
    from pyspark.sql import functions as F

    event = F.from_json(F.col("value").cast("string"), event_schema(settings), {"mode": "FAILFAST"})
    if not {"topic", "partition", "offset"} <= set(records.columns):
        return records.select(event.alias("event")).select("event.*")
    position = F.format_string("topic %s, partition %d, offset %d", "topic", "partition", "offset")
    return records.select(event.alias("event"), position.alias(POSITION)).select("event.*", POSITION)


@dataclass
class StreamProgress:
    """What the stream has written so far (updated on the driver after each micro-batch)."""

    batches: int = 0
    events_written: int = 0
    started: float = field(default_factory=time.perf_counter)
    failed_at: Optional[str] = None  # the failed micro-batch, and its bad record when one is found

    def summary(self) -> IndexSummary:
        # Every event read is written (or the micro-batch fails), so read == written.
        return IndexSummary(self.events_written, self.events_written, time.perf_counter() - self.started)


class _MicroBatchWriter:
    """The ``foreachBatch`` function: all of a micro-batch's events, appended from the executors."""

    def __init__(self, target: IndexTarget, progress: StreamProgress):
        self.target = target
        self.progress = progress

    def __call__(self, events: Any, batch_id: int) -> None:
        start = time.perf_counter()
        # write_spark partitions by entity key and writes every row: several events of one entity
        # in one micro-batch are all appended (Feast's stream processor keeps only the newest).
        try:
            written = write_spark(self.target, events.drop(POSITION))
        except Exception:
            self.progress.failed_at = f"micro-batch {batch_id}{bad_record(self.target.settings, events)}"
            raise
        self.progress.batches += 1
        self.progress.events_written += written
        report(
            "stream",
            self.target.settings.view_name,
            f"batch {batch_id}: {written:,} events written in {time.perf_counter() - start:.2f} s",
        )


@dataclass
class IndexingStream:
    """A running streaming indexer: its Spark query and what it has written."""

    query: Any  # pyspark.sql.streaming.StreamingQuery
    progress: StreamProgress
    checkpoint: str

    def wait(self, timeout_seconds: Optional[float] = None) -> bool:
        """Block until the query ends (``--once``: when the available events are indexed) or the
        timeout passes; True if it ended. Raises ``FeastSequenceError`` if the query failed."""
        from pyspark.errors import StreamingQueryException

        try:
            if timeout_seconds is None:
                self.query.awaitTermination()
                return True
            return bool(self.query.awaitTermination(timeout_seconds))
        except StreamingQueryException as exc:
            failed_at = self.progress.failed_at
            if failed_at and ": " in failed_at:  # the bad record was found
                cause = f"at {failed_at}."
            else:
                cause = f"at {failed_at}: {_root_cause(str(exc))}" if failed_at else _root_cause(str(exc))
            raise FeastSequenceError(
                f"Streaming indexer {self.query.name!r} stopped: {cause} Every "
                "micro-batch before the failed one is in the store (that one possibly in part). Fix the "
                f"cause and restart with --checkpoint {self.checkpoint}: the failed micro-batch is "
                "replayed, which is harmless (appends are idempotent)."
            ) from exc

    def stop(self, timeout_seconds: float = 60.0) -> None:
        """Stop between micro-batches: the one in flight (if any) is let finish and commit first.

        Interrupting ``foreachBatch`` would leave that micro-batch to be replayed at restart, which is
        harmless, but Spark 4.3 may then die in its own error handling (a StackOverflowError in the
        stream thread)."""
        deadline = time.monotonic() + timeout_seconds
        while self.query.isActive and self.query.status["isTriggerActive"] and time.monotonic() < deadline:
            time.sleep(0.05)
        self.query.stop()


def bad_record(settings: SequenceSettings, events: Any) -> str:
    """Where a failed micro-batch's first invalid event came from, as ``: <the error> (record: <its
    file and number in it, or its Kafka topic, partition and offset>)``, or "" when its events are
    valid (the failure was elsewhere, e.g. Redis). Runs on the driver, only after a failure."""
    from feast_sequence.errors import SequenceInputError
    from feast_sequence.storage.append import encode_frame

    if POSITION not in events.columns:
        return ""
    frame = events.toPandas()
    positions = frame.pop(POSITION)
    # A file's records reach one task in order: their count within the file is their number in it.
    if not positions.str.startswith("topic ").all():
        positions = positions + ", record " + (positions.groupby(positions).cumcount() + 1).astype(str)
    try:
        encode_frame(settings, frame.reset_index(drop=True))
    except SequenceInputError as error:
        row = re.search(r"\brow (\d+)", str(error))
        where = f" (record: {positions.iloc[int(row.group(1))]})" if row else ""
        return f": {error}{where}"
    return ""


def _root_cause(message: str) -> str:
    """The innermost exception line of a Spark error (a Python worker's traceback included)."""
    causes = _EXCEPTION_LINE.findall(message)
    cause = causes[-1].strip() if causes else message.splitlines()[0]
    return cause if cause.endswith(".") else cause + "."


def run_stream(
    context: JobContext,
    spark: Any,
    source: EventStream,
    checkpoint: str,
    trigger_seconds: Optional[float] = None,
    available_now: bool = False,
) -> IndexingStream:
    """Start indexing ``source`` into the view; returns at once (``wait()`` blocks).

    ``checkpoint`` records the source offsets of each micro-batch and which ones were committed;
    one per view and source. Triggers: every ``trigger_seconds``, or ``available_now`` (what the
    source holds at start, in as many micro-batches as its limits make, then stop), or by default
    a new micro-batch as soon as the previous one ends.
    """
    view = context.settings.view_name
    if trigger_seconds is not None and available_now:
        raise SequenceConfigurationError(
            f"Streaming '{view}': choose a trigger interval or available-now (--once), not both."
        )
    if trigger_seconds is not None and trigger_seconds <= 0:
        raise SequenceConfigurationError(
            f"Streaming '{view}': trigger_seconds={trigger_seconds} is invalid; use a positive number of "
            "seconds, or none to start each micro-batch as soon as the previous one ends."
        )
    progress = StreamProgress()
    writer = (
        source(spark, context.settings)
        .writeStream.queryName(f"feast-sequence {view}")
        .option("checkpointLocation", checkpoint)
        .foreachBatch(_MicroBatchWriter(context.target, progress))
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    elif trigger_seconds is not None:
        writer = writer.trigger(processingTime=f"{int(trigger_seconds * 1000)} milliseconds")
    return IndexingStream(writer.start(), progress, checkpoint)


def job_spark_session(context: JobContext) -> Any:
    """The job's Spark session: the repository's Spark offline store settings if it has them."""
    return context.spark()


if __name__ == "__main__":
    sys.exit(spark_submit("stream"))
