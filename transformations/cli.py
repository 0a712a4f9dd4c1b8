"""``feast-sequence``: the offline jobs, validation, looking at a sequence, the health check and the
feature server with the fast ``/push``, as one click group (``feast-sequence --help``, and
``feast-sequence <command> --help``).

Every command takes ``--repo`` (default: the current directory, as ``feast`` does), ``--debug``
(tracebacks) and ``--verbose`` (every warning, Spark's own logging); errors print as one line.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, List, Optional

import click
from feast import FeatureStore

from feast_sequence.errors import SequenceConfigurationError, SequenceStoreError
from feast_sequence.online import health, read_command
from feast_sequence.transformations import (
    backfill,
    compact,
    consistency,
    correction,
    enrichment,
    reindex,
    show,
    streaming,
    verify,
)
from feast_sequence.transformations.command_line import ISO_TIME, JobCommand, repo_option, run
from feast_sequence.validations import cli as validation_cli


@click.command("health", cls=JobCommand, short_help="Check that the online store's Redis answers and kept its data.")
@repo_option
def health_command(repo: str) -> int:
    """Exit 0 when every Redis of the online store answers and holds every applied sequence view's
    record, 1 otherwise: a readiness probe next to `feast serve` (docs/reliability.md)."""
    try:
        millis = health.check(FeatureStore(repo_path=repo))
    except (SequenceStoreError, SequenceConfigurationError) as error:
        click.echo(f"unhealthy: {error}", err=True)
        return 1
    click.echo(f"healthy: Redis answered in {millis:.1f} ms")
    return 0


@click.command(
    "serve",
    short_help="Feast's feature server, with the fast /push.",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
def serve_command(options: Any) -> int:
    """`feast serve` with a /push whose cost does not grow with the registry (docs/ingest.md);
    `feast-sequence serve --help` lists feast serve's options."""
    # Imported on use: the feature server pulls in FastAPI, gunicorn and Feast's server modules.
    from feast_sequence.online import push_server

    return push_server.main(list(options))


@click.command("consistency", cls=JobCommand, short_help="Compare logged responses with offline recomputation.")
@repo_option
@click.option("--use-case", "use_cases", multiple=True, help="a use case (repeat; default: all that log)")
@click.option("--start", type=ISO_TIME, help="logged from this ISO time (default: all)")
@click.option("--end", type=ISO_TIME, help="logged before this ISO time (default: now)")
@click.option("--out", default="consistency-report", show_default=True, help="report folder")
@click.option("--min-match-rate", type=float, default=0.99, show_default=True, help="gate: least exact-match rate")
@click.option("--data-docs", is_flag=True, help="also build GE Data Docs under --out/validation")
def consistency_command(
    repo: str,
    use_cases: Any,
    start: Optional[datetime],
    end: Optional[datetime],
    out: str,
    min_match_rate: float,
    data_docs: bool,
) -> int:
    """Re-join logged online responses offline and report skew per use case and view (docs/monitoring.md)."""
    argv = ["--repo", repo, "--out", out, "--min-match-rate", str(min_match_rate)]
    argv += [a for name in use_cases for a in ("--use-case", name)]
    argv += ["--start", start.isoformat()] if start else []
    argv += ["--end", end.isoformat()] if end else []
    argv += ["--data-docs"] if data_docs else []
    return consistency.main(argv)


@click.command("get-online-features", cls=JobCommand, short_help="Feast's get-online-features, typed keys, JSON.")
@repo_option
@click.option("-e", "--entities", multiple=True, help="key=value, once per key and row")
@click.option("-f", "--features", multiple=True, help="view:feature (repeatable)")
@click.option("--feature-service", help="a feature service or sequence use case, instead of -f")
@click.option("--full-feature-names", is_flag=True, help="name features view__feature")
def get_online_features_command(
    repo: str, entities: Any, features: Any, feature_service: Optional[str], full_feature_names: bool
) -> int:
    """Read online features of sequence views (and any others), printed as JSON with ISO timestamps."""
    argv = ["--repo", repo] + [a for e in entities for a in ("-e", e)] + [a for f in features for a in ("-f", f)]
    argv += ["--feature-service", feature_service] if feature_service else []
    argv += ["--full-feature-names"] if full_feature_names else []
    return read_command.main(argv)


@click.group(
    "feast-sequence",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120, "terminal_width": 120},
)
def group() -> None:
    """Sequence views on Feast: offline jobs, validation, and looking at what the store serves."""


for _command in (
    backfill.command,
    correction.command,
    enrichment.command,
    reindex.command,
    compact.command,
    verify.command,
    streaming.command,
    validation_cli.command,
    show.command,
    health_command,
    serve_command,
    consistency_command,
    get_online_features_command,
):
    group.add_command(_command)


def main(argv: Optional[List[str]] = None) -> int:
    """The ``feast-sequence`` entry point; returns the exit code (2 for a usage error)."""
    return run(group, argv, "feast-sequence")
