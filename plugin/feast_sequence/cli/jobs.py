"""The indexing jobs' commands: backfill, correct, enrich, reindex, compact and stream.

Each parses its options and calls its job in ``feast_sequence.transformations`` (docs/offline.md,
docs/streaming.md), imported when the command runs: Spark loads only for a job that runs.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Optional, Tuple

import click

from feast_sequence.cli._options import (
    ISO_TIME,
    JobCommand,
    gate_options,
    repo_option,
    selection_options,
    verbose,
    view_option,
)

#: The stream source formats (transformations/streaming.FILE_FORMATS, which the job checks too).
FILE_FORMATS = ("json", "parquet")


@click.command("backfill", cls=JobCommand, short_help="Index the last D days of a view's batch source.")
@repo_option
@view_option
@click.option("--days", type=float, required=True, help="how far back from --end")
@click.option("--end", type=ISO_TIME, help="ISO time (default: now, UTC)")
@selection_options
@gate_options
def backfill(repo: str, view: str, days: float, end: Optional[datetime], selection: Any, gate: Any) -> int:
    """Index the last D days of a view's batch source (idempotent: a re-run writes the same events)."""
    from feast_sequence.transformations._job import finished, open_view
    from feast_sequence.transformations.backfill import run_backfill

    return int(finished("backfill", view, run_backfill(open_view(repo, view, verbose()), days, end, selection, gate)))


@click.command("correct", cls=JobCommand, short_help="Re-index a time range of a view from its batch source.")
@repo_option
@view_option
@click.option("--start", type=ISO_TIME, required=True, help="ISO time, start of the range (UTC unless zoned)")
@click.option("--end", type=ISO_TIME, required=True, help="ISO time, end of the range (inclusive)")
@selection_options
@gate_options
def correct(repo: str, view: str, start: datetime, end: datetime, selection: Any, gate: Any) -> int:
    """Replace each entity's stored events in [start, end] by the source's events of that range."""
    if end < start:
        raise click.BadParameter("--end is before --start", param_hint="--end")
    from feast_sequence.transformations._job import finished, open_view
    from feast_sequence.transformations.correction import run_correction

    return int(
        finished("correction", view, run_correction(open_view(repo, view, verbose()), start, end, selection, gate))
    )


@click.command("enrich", cls=JobCommand, short_help="Fill a newly added field in every stored event of a view.")
@repo_option
@view_option
@click.option("--table", required=True, help="parquet path of the enrichment table")
@click.option("--on", "on", required=True, help="event field matched against the table's column of the same name")
@click.option("--fields", required=True, help="comma-separated table columns to copy into the events")
@click.option("--offline-output", help="parquet folder for the enriched source events (training data)")
@click.option("--overwrite", is_flag=True, help="re-enrich events that already have the fields")
def enrich(
    repo: str, view: str, table: str, on: str, fields: str, offline_output: Optional[str], overwrite: bool
) -> int:
    """Fill a field newly added to a view in every stored event, joined from a table (docs/offline.md)."""
    from feast_sequence.transformations._job import finished, open_view
    from feast_sequence.transformations.enrichment import run_enrichment

    context = open_view(repo, view, verbose())
    frame = context.spark().read.parquet(table)
    return int(
        finished("enrich", view, run_enrichment(context, frame, on, fields.split(","), offline_output, overwrite))
    )


@click.command("reindex", cls=JobCommand, short_help="Rebuild a view under a change `feast apply` refuses.")
@repo_option
@view_option
@click.option("--days", type=float, help="how far back from --end (default: the TTL, or all)")
@click.option("--end", type=ISO_TIME, help="ISO time (default: now, UTC)")
def reindex(repo: str, view: str, days: Optional[float], end: Optional[datetime]) -> int:
    """Delete a view's stored events, apply the repository, and backfill the view (docs/concepts.md)."""
    from feast_sequence.transformations._job import finished
    from feast_sequence.transformations.reindex import run_reindex

    return int(finished("reindex", view, run_reindex(repo, view, days, end, verbose())))


@click.command("compact", cls=JobCommand, short_help="Compact stored sequences' tails into their blocks.")
@repo_option
@click.option("--view", help="one sequence view (default: all of them)")
@click.option("--every", type=float, help="run again every this many seconds, until stopped")
def compact(repo: str, view: Optional[str], every: Optional[float]) -> int:
    """Merge the tails of stored sequences into their compressed blocks (docs/storage-layout.md);
    converts sequences stored before blocks existed, in place."""
    from feast_sequence.transformations.compact import run_compaction

    while True:
        run_compaction(repo, view)
        if every is None:
            return 0
        time.sleep(every)


@click.command("stream", cls=JobCommand, short_help="Index a stream (Kafka, or files landing in a folder).")
@repo_option
@view_option
@click.option("--files", metavar="DIR", help="file source: the folder event files land in")
@click.option("--kafka", metavar="SERVERS", help="Kafka source: kafka.bootstrap.servers")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(FILE_FORMATS),
    default="json",
    show_default=True,
    help="files: their format",
)
@click.option("--max-files-per-trigger", type=int, help="files: at most this many per micro-batch")
@click.option("--topic", help="Kafka: topic(s) to subscribe to, comma-separated")
@click.option(
    "--starting-offsets", default="latest", show_default=True, help="Kafka, first run only: latest, earliest or JSON"
)
@click.option(
    "--fail-on-data-loss/--no-fail-on-data-loss",
    default=True,
    show_default=True,
    help="Kafka: fail when offsets were deleted before they were read",
)
@click.option("--max-offsets-per-trigger", type=int, help="Kafka: at most this many per micro-batch")
@click.option(
    "--kafka-option",
    "kafka_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Kafka: any other source option, e.g. kafka.security.protocol=SASL_SSL (repeatable)",
)
@click.option("--checkpoint", required=True, help="checkpoint folder (one per view and source; HDFS/S3 on a cluster)")
@click.option("--trigger-seconds", type=float, help="start a micro-batch every this many seconds")
@click.option("--once", is_flag=True, help="index what the source holds now, then stop (available-now)")
def stream(
    repo: str,
    view: str,
    files: Optional[str],
    kafka: Optional[str],
    file_format: str,
    max_files_per_trigger: Optional[int],
    topic: Optional[str],
    starting_offsets: str,
    fail_on_data_loss: bool,
    max_offsets_per_trigger: Optional[int],
    kafka_options: Tuple[str, ...],
    checkpoint: str,
    trigger_seconds: Optional[float],
    once: bool,
) -> int:
    """Append every event of a stream to a view, one micro-batch at a time (docs/streaming.md)."""
    if trigger_seconds is not None and once:
        raise click.UsageError("--trigger-seconds and --once exclude each other")
    if bool(files) == bool(kafka):
        raise click.UsageError("give one source: --files DIR or --kafka SERVERS")
    if kafka and not topic:
        raise click.UsageError("--kafka needs --topic")
    options = []
    for option in kafka_options:
        key, sep, value = option.partition("=")
        if not sep:
            raise click.BadParameter(f"{option!r}: use KEY=VALUE", param_hint="--kafka-option")
        options.append((key, value))
    from feast_sequence.transformations._job import open_view, report
    from feast_sequence.transformations.streaming import FileStream, KafkaStream, run_stream

    source: Any = (
        FileStream(files, file_format, max_files_per_trigger)
        if files
        else KafkaStream(
            str(kafka), str(topic), starting_offsets, fail_on_data_loss, max_offsets_per_trigger, tuple(options)
        )
    )
    context = open_view(repo, view, verbose())
    indexing = run_stream(context, context.spark(), source, checkpoint, trigger_seconds, once)
    report("stream", view, f"started; checkpoint {checkpoint}")
    try:
        indexing.wait()
    except KeyboardInterrupt:
        indexing.stop()
    report("stream", view, f"{indexing.progress.batches} micro-batches, {indexing.progress.summary()}")
    return 0


COMMANDS = (backfill, correct, enrich, reindex, compact, stream)
