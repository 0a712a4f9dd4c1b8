"""``feast-sequence validate events|sequences|training``: run a suite, print its report, exit 1 on failure."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

import click
import pandas as pd

from feast_sequence.storage.client import redis_client
from feast_sequence.transformations._job import EPOCH, open_view
from feast_sequence.transformations.command_line import (
    ISO_TIME,
    JobCommand,
    duplicate_options,
    repo_option,
    verbose,
    view_option,
)
from feast_sequence.validations.event_source import EventSourceChecks, validate_event_source
from feast_sequence.validations.sequences import validate_sequences
from feast_sequence.validations.training import validate_training


@click.command("validate", cls=JobCommand, short_help="Validate a view's events, sequences or training set.")
@click.argument("dataset", type=click.Choice(["events", "sequences", "training"]))
@repo_option
@view_option
@click.option("--report-dir", type=click.Path(path_type=Path), help="folder for the HTML report (GE Data Docs)")
@click.option("--start", type=ISO_TIME, help="events: from this time (default: the beginning)")
@click.option("--end", type=ISO_TIME, help="events: up to this time (default: now)")
@duplicate_options
@click.option("--sample", type=int, help="sequences: validate this many random entities (default: all)")
@click.option(
    "--training", type=click.Path(path_type=Path), help="training: a parquet file from get_historical_features"
)
@click.option("--timestamps-column", help="training: the column with the view's timestamp lists")
def command(
    dataset: str,
    repo: str,
    view: str,
    report_dir: Optional[Path],
    start: Optional[datetime],
    end: Optional[datetime],
    max_duplicate_rate: Optional[float],
    sample: Optional[int],
    training: Optional[Path],
    timestamps_column: Optional[str],
) -> int:
    """Run the DATASET's suite (events: the batch source; sequences: what Redis holds; training: a
    get_historical_features file), print its report, and exit 1 if it failed (docs/validation.md)."""
    context = open_view(repo, view, verbose())
    settings = context.settings
    if dataset == "events":
        until = end or pd.Timestamp.now(tz="UTC").to_pydatetime()
        events = context.events(start or EPOCH, until)
        checks = EventSourceChecks(max_duplicate_rate=max_duplicate_rate)
        report = validate_event_source(settings, events, checks, report_dir)
    elif dataset == "sequences":
        client = redis_client(context.target.online_config)
        report = validate_sequences(settings, client, context.target.project, sample=sample, report_dir=report_dir)
    else:
        if not (training and timestamps_column):
            raise click.UsageError("training needs --training and --timestamps-column")
        report = validate_training(settings, pd.read_parquet(training), timestamps_column, report_dir=report_dir)
    click.echo(str(report))
    return 0 if report.success else 1
