"""``feast-sequence demo`` (what ``make demo`` runs): the retail demo of ``feast_sequence.demo`` on
the example repository, imported when the command runs.

    feast-sequence demo --repo feature_repo [--raw PARQUET] [--batch-rows N] [--report FOLDER]
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from feast_sequence.cli._options import JobCommand, repo_option, verbose


@click.command("demo", cls=JobCommand, short_help="Replay the retail events, read them back, check consistency.")
@repo_option
@click.option("--raw", help="the raw retail events, parquet (default: examples/retail.py's RAW_FILE, under data/)")
@click.option("--batch-rows", type=click.IntRange(min=1), default=5000, show_default=True, help="events per push")
@click.option("--report", default="consistency-report", show_default=True, help="consistency report folder")
def command(repo: str, raw: Optional[str], batch_rows: int, report: str) -> int:
    """Apply the example repository REPO (feature_repo/), replay the real retail events through
    store.push, read three customers' sequences and a use case back, and check the use case's logged
    responses against the offline engine (an HTML report). Uses the Redis named by
    FEAST_SEQUENCE_REDIS (host:port), or starts a private redis-server."""
    from feast_sequence.demo import run_demo

    run_demo(Path(repo), Path(raw) if raw else None, batch_rows, Path(report), verbose())
    return 0
