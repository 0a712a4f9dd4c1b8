"""``feast-sequence erase``: erase entities everywhere, for good (feast_sequence.erase; docs/privacy.md).

feast-sequence erase --repo feature_repo --entity customer_id=12347 [--view V ...] [--before ISO]
feast-sequence erase --repo feature_repo --entities erase.csv --reports consistency-report
feast-sequence erase --repo feature_repo --reapply
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence

import click
import pandas as pd
from feast import FeatureStore

from feast_sequence.errors import SequenceInputError
from feast_sequence.monitoring import erasure
from feast_sequence.output import progress
from feast_sequence.transformations._job import report
from feast_sequence.transformations.command_line import ISO_TIME, JobCommand, repo_option, script


def parse_entity(text: str) -> Dict[str, str]:
    """``customer_id=12347`` (``a=1,b=x`` for several join keys) as a mapping of text values; the
    erase converts them to the join keys' types."""
    entity: Dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise SequenceInputError(f"--entity {text!r}: use NAME=VALUE, comma-separated for several join keys.")
        entity[name.strip()] = value.strip()
    return entity


def entities_from(texts: Sequence[str], path: Optional[str]) -> List[Dict[str, Any]]:
    """The ``--entity`` values, then the rows of ``--entities`` (a CSV whose header names the join keys)."""
    entities: List[Dict[str, Any]] = [parse_entity(t) for t in texts]
    if path:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        entities += frame.to_dict("records")
    return entities


@click.command("erase", cls=JobCommand, short_help="Erase entities from every view, log and report, for good.")
@repo_option
@click.option("--entity", "entity_texts", multiple=True, help="NAME=VALUE[,NAME=VALUE] (repeat)")
@click.option("--entities", "entities_file", help="a CSV of entities, one per row, a column per join key")
@click.option("--view", "views", multiple=True, help="a sequence view (repeat; default: every one, later ones too)")
@click.option("--before", type=ISO_TIME, help="erase events up to this ISO time, inclusive (default: now)")
@click.option("--reports", multiple=True, help="a consistency --out folder whose per-row results to delete (repeat)")
@click.option("--by", help="who asked, for the audit record (default: the OS user)")
@click.option("--reapply", is_flag=True, help="apply every recorded erasure to Redis again (after it lost data)")
def command(
    repo: str,
    entity_texts: Sequence[str],
    entities_file: Optional[str],
    views: Sequence[str],
    before: Optional[datetime],
    reports: Sequence[str],
    by: Optional[str],
    reapply: bool,
) -> int:
    """Erase entities' events from every sequence view (or --view), serving logs and consistency
    rows, and record markers so that no writer and no training set brings them back (docs/privacy.md)."""
    store = FeatureStore(repo_path=repo)
    if reapply:
        counts = erasure.reapply(store)
        report("erase", "reapply", f"{counts.entities:,} entities, {counts.events:,} stored events erased again")
        return 0
    entities = entities_from(entity_texts, entities_file)
    if not entities:
        raise click.UsageError("give --entity, --entities or --reapply")
    with progress("erase", len(entities)) as advance:
        result = erasure.erase(store, entities, views, before, reports, by, advance)
    report("erase", "result", result)
    return 0


main = script(command, "feast-sequence erase")


if __name__ == "__main__":
    sys.exit(main())
