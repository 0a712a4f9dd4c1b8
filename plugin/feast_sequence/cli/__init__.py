"""``feast-sequence``: the offline jobs, the data checks, looking at a sequence, the health check,
the feature server with the fast ``/push`` and the demo, as one click group (``feast-sequence --help``, and
``feast-sequence <command> --help`` or ``-h``).

The top layer: it may import any module of the package, and none imports it. Its modules parse
options and call the code that does the work (``transformations/``, ``validations/``, ``online/``),
imported when a command runs, so that ``--help`` and the commands that need no Spark start fast.
Every command takes ``--repo`` (default: the current directory, as ``feast`` does), ``--debug``
(tracebacks) and ``--verbose`` (every warning, Spark's own logging); errors print as one line.
"""

from __future__ import annotations

from typing import List, Optional

import click

from feast_sequence.cli import checks, demo, erase, jobs, online, show
from feast_sequence.cli._options import CONTEXT_SETTINGS, run


@click.group("feast-sequence", context_settings=CONTEXT_SETTINGS)
def group() -> None:
    """Sequence views on Feast: offline jobs, validation, and looking at what the store serves."""


for _command in (*jobs.COMMANDS, erase.command, *checks.COMMANDS, show.command, *online.COMMANDS, demo.command):
    group.add_command(_command)


def main(argv: Optional[List[str]] = None) -> int:
    """The ``feast-sequence`` entry point; returns the exit code (2 for a usage error)."""
    return run(group, argv, "feast-sequence")
