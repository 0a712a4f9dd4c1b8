"""``feast-sequence``: the offline jobs, validation, the health check and the feature server with the
fast ``/push`` from the command line (``feast-sequence <command> --help``)."""

from __future__ import annotations

import sys
from typing import List, Optional

from feast_sequence.online import health, read_command
from feast_sequence.transformations import backfill, correction, enrichment, reindex, streaming
from feast_sequence.validations import cli as validation_cli


def _serve(argv: List[str]) -> int:
    # Imported on use: the feature server pulls in FastAPI, gunicorn and Feast's server modules.
    from feast_sequence.online import push_server

    return push_server.main(argv)


JOBS = {
    "backfill": backfill.main,
    "correct": correction.main,
    "enrich": enrichment.main,
    "validate": validation_cli.main,
    "health": health.main,
    "get-online-features": read_command.main,
    "stream": streaming.main,
    "reindex": reindex.main,
    "serve": _serve,
}


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in JOBS:
        print(
            f"usage: feast-sequence {{{','.join(JOBS)}}} [options]   (feast-sequence <job> --help)",
            file=sys.stderr,
        )
        return 2
    return JOBS[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
