"""The data checks' commands: ``validate events|sequences|training`` (one Great Expectations suite,
docs/validation.md), ``consistency`` (logged online responses against the offline engine,
docs/monitoring.md) and ``verify`` (corrupt or incoherent stored sequences, docs/offline.md). Each
exits 1 when its check fails."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional, Tuple

import click

from feast_sequence.cli._options import ISO_TIME, JobCommand, duplicate_option, repo_option, verbose, view_option

TRAINING_NEEDS = "training needs --training and --timestamps-column"


@click.command("validate", cls=JobCommand, short_help="Validate a view's events, sequences or training set.")
@click.argument("dataset", type=click.Choice(["events", "sequences", "training"]))
@repo_option
@view_option
@click.option("--report-dir", type=click.Path(path_type=Path), help="folder for the HTML report (GE Data Docs)")
@click.option("--start", type=ISO_TIME, help="events: from this time (default: the beginning)")
@click.option("--end", type=ISO_TIME, help="events: up to this time (default: now)")
@duplicate_option
@click.option("--sample", type=int, help="sequences: validate this many random entities (default: all)")
@click.option(
    "--training", type=click.Path(path_type=Path), help="training: a parquet file from get_historical_features"
)
@click.option("--timestamps-column", help="training: the column with the view's timestamp lists")
def validate(
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
    if dataset == "training" and not (training and timestamps_column):
        raise click.UsageError(TRAINING_NEEDS)
    import pandas as pd

    from feast_sequence.storage.client import redis_client
    from feast_sequence.transformations._job import EPOCH, open_view
    from feast_sequence.validations.event_source import EventSourceChecks, validate_event_source
    from feast_sequence.validations.sequences import validate_sequences
    from feast_sequence.validations.training import validate_training

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
    elif training and timestamps_column:
        report = validate_training(settings, pd.read_parquet(training), timestamps_column, report_dir=report_dir)
    else:
        raise click.UsageError(TRAINING_NEEDS)
    click.echo(str(report))
    return 0 if report.success else 1


@click.command("consistency", cls=JobCommand, short_help="Compare logged responses with offline recomputation.")
@repo_option
@click.option("--use-case", "use_cases", multiple=True, help="a use case (repeat; default: all that log)")
@click.option("--start", type=ISO_TIME, help="logged from this ISO time (default: all)")
@click.option("--end", type=ISO_TIME, help="logged before this ISO time (default: now)")
@click.option("--out", default="consistency-report", show_default=True, help="report folder")
@click.option("--min-match-rate", type=float, default=0.99, show_default=True, help="gate: least exact-match rate")
@click.option("--data-docs", is_flag=True, help="also build GE Data Docs under --out/validation")
@click.option("--allow-empty", is_flag=True, help="pass the gate when the range holds no logged rows")
def consistency(
    repo: str,
    use_cases: Tuple[str, ...],
    start: Optional[datetime],
    end: Optional[datetime],
    out: str,
    min_match_rate: float,
    data_docs: bool,
    allow_empty: bool,
) -> int:
    """Re-join logged online responses offline and report skew per use case and view (docs/monitoring.md);
    exit 1 when a view's exact-match rate is under --min-match-rate, or when a use case logged nothing
    in the range (unless --allow-empty)."""
    from feast import FeatureStore

    from feast_sequence.monitoring.report import Thresholds
    from feast_sequence.transformations._job import EPOCH
    from feast_sequence.transformations.consistency_job import print_summary, run_consistency

    run = run_consistency(
        FeatureStore(repo_path=repo),
        Path(out),
        start or EPOCH,
        end,
        use_cases,
        Thresholds(min_match_rate, allow_empty),
        data_docs,
    )
    print_summary(run)
    return 0 if run.passed else 1


@click.command("verify", cls=JobCommand, short_help="Find (and --repair) corrupt or incoherent stored sequences.")
@repo_option
@click.option("--view", help="one sequence view (default: all of them)")
@click.option("--repair", is_flag=True, help="rebuild the sequences found from the offline source (Spark)")
@click.option("--end", type=ISO_TIME, help="with --repair: the rebuild's end, ISO time (default: now, UTC)")
def verify(repo: str, view: Optional[str], repair: bool, end: Optional[datetime]) -> int:
    """Check every stored sequence for a corrupt block or incoherent state; exit 1 if any is found
    (and not repaired)."""
    from feast_sequence.transformations.verify import run_verify

    findings = run_verify(repo, view, repair, end, verbose())
    return 0 if not findings or repair else 1


COMMANDS = (validate, consistency, verify)
