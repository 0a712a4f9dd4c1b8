"""``feast-sequence erase``: erase entities everywhere, for good (feast_sequence.erase; docs/privacy.md).

    feast-sequence erase --repo feature_repo --entity customer_id=12347 [--view V ...] [--before ISO]
    feast-sequence erase --repo feature_repo --entities erase.csv --reports consistency-report
    feast-sequence erase --repo feature_repo --reapply

The work is ``feast_sequence.monitoring.erasure``'s, imported when the command runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence

import click

from feast_sequence.cli._options import ISO_TIME, JobCommand, repo_option
from feast_sequence.cli.entity_arguments import entity_rows


def entities_from(store: Any, pairs: Sequence[str], path: Optional[str]) -> List[Dict[str, Any]]:
    """The ``--entity`` rows (typed as the repository's join keys), then the rows of ``--entities``
    (a CSV whose header names the join keys; the erase converts their text)."""
    import pandas as pd

    entities = entity_rows(pairs, {e.join_key: e.value_type for e in store.list_entities()})
    if path:
        entities += pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
    return entities


@click.command("erase", cls=JobCommand, short_help="Erase entities from every view, log and report, for good.")
@repo_option
@click.option(
    "--entity", "pairs", multiple=True, help="key=value, once per join key and entity (as -e of get-online-features)"
)
@click.option("--entities", "entities_file", help="a CSV of entities, one per row, a column per join key")
@click.option("--view", "views", multiple=True, help="a sequence view (repeat; default: every one, later ones too)")
@click.option("--before", type=ISO_TIME, help="erase events up to this ISO time, inclusive (default: now)")
@click.option("--reports", multiple=True, help="a consistency --out folder whose per-row results to delete (repeat)")
@click.option("--by", help="who asked, for the audit record (default: the OS user)")
@click.option("--reapply", is_flag=True, help="apply every recorded erasure to Redis again (after it lost data)")
def command(
    repo: str,
    pairs: Sequence[str],
    entities_file: Optional[str],
    views: Sequence[str],
    before: Optional[datetime],
    reports: Sequence[str],
    by: Optional[str],
    reapply: bool,
) -> int:
    """Erase entities' events from every sequence view (or --view), serving logs and consistency
    rows, and record markers so that no writer and no training set brings them back (docs/privacy.md)."""
    from feast import FeatureStore

    from feast_sequence.monitoring import erasure
    from feast_sequence.output import progress
    from feast_sequence.transformations._job import report

    store = FeatureStore(repo_path=repo)
    if reapply:
        counts = erasure.reapply(store)
        report("erase", "reapply", f"{counts.entities:,} entities, {counts.events:,} stored events erased again")
        return 0
    entities = entities_from(store, pairs, entities_file)
    if not entities:
        raise click.UsageError("give --entity, --entities or --reapply")
    with progress("erase", len(entities)) as advance:
        result = erasure.erase(store, entities, views, before, reports, by, advance)
    report("erase", "result", result)
    return 0
