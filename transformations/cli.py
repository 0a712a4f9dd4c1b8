"""``feast-sequence``: the offline jobs, validation, looking at a sequence, the health check and the
feature server with the fast ``/push``, as one click group (``feast-sequence --help``, and
``feast-sequence <command> --help``).

Every command takes ``--repo`` (default: the current directory, as ``feast`` does), ``--debug``
(tracebacks) and ``--verbose`` (every warning, Spark's own logging); errors print as one line.
"""

from __future__ import annotations

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
)
from feast_sequence.transformations.command_line import JobCommand, repo_option, run
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


def _passthrough(name: str, short_help: str, entry: Any) -> click.Command:
    """A command whose options its own argparse entry point parses (``<command> --help`` lists them)."""

    @click.command(
        name,
        short_help=short_help,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    )
    @click.argument("options", nargs=-1, type=click.UNPROCESSED)
    def command(options: Any) -> int:
        return int(entry(list(options)))

    return command


consistency_command = _passthrough(
    "consistency", "Compare logged responses with their offline recomputation.", consistency.main
)
get_online_features_command = _passthrough(
    "get-online-features", "Feast's get-online-features, typed keys, JSON timestamps.", read_command.main
)


@click.group(
    "feast-sequence",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)
def group() -> None:
    """Sequence views on Feast: offline jobs, validation, and looking at what the store serves."""


for _command in (
    backfill.command,
    correction.command,
    enrichment.command,
    reindex.command,
    compact.command,
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
