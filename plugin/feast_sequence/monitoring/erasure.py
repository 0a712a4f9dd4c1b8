"""Erasing entities everywhere the project keeps their data: every sequence view in Redis (with a
marker that every later write honours), the use cases' serving logs, and the consistency job's
per-row outputs; one audit record per erase. What stays with the owner of the offline source is in
docs/privacy.md.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore

from feast_sequence.definitions.settings import is_sequence_view, sequence_settings
from feast_sequence.definitions.use_case import is_use_case
from feast_sequence.errors import SequenceInputError
from feast_sequence.monitoring.report import ROWS_FILE
from feast_sequence.offline.erasures import append_audit, entities_digest
from feast_sequence.online.erasure import erase_online, erasure_request, reapply_erasures
from feast_sequence.serving.log_files import logged_files
from feast_sequence.storage.erasure import ErasedCounts


@dataclass(frozen=True)
class ErasureResult:
    """What one erase did: entities and views, the time it erased up to, and what it removed."""

    entities: int
    views: Optional[Tuple[str, ...]]  # None: every sequence view, later ones included
    before: datetime
    made_at: datetime
    events_erased: int  # from Redis: tails and blocks
    log_rows_removed: int  # from file serving logs
    report_files_removed: int  # consistency rows.parquet files under the given folders
    logs_left: Tuple[str, ...] = ()  # use cases logging elsewhere than to files: their owner's to clean

    def __str__(self) -> str:
        views = ", ".join(self.views) if self.views else "every sequence view"
        left = f"; logs of {', '.join(self.logs_left)} are not files: erase them there" if self.logs_left else ""
        return (
            f"{self.entities:,} entities erased from {views} up to {self.before.isoformat()}: "
            f"{self.events_erased:,} stored events, {self.log_rows_removed:,} serving-log rows, "
            f"{self.report_files_removed:,} consistency row files{left}"
        )


def erase(
    store: FeatureStore,
    entities: Sequence[Mapping[str, Any]],
    views: Sequence[str] = (),
    before: Optional[datetime] = None,
    reports: Sequence[str] = (),
    by: Optional[str] = None,
    on_erased: Optional[Callable[[int], Any]] = None,
) -> ErasureResult:
    """Erase ``entities`` (each a mapping of join key -> value) for good: their events up to
    ``before`` (default: now) from ``views`` (default: every sequence view, later ones included),
    and their rows from serving logs and consistency outputs under ``reports``. Records a marker
    per entity (Redis and the offline copy) so that no writer and no training set brings the events
    back, and an audit record naming ``by`` (default: the OS user). Safe to run again: a no-op.
    Raises ``SequenceInputError`` for an unknown view or an entity no view has the join keys of."""
    sequence_views = [sequence_settings(v) for v in store.list_feature_views() if is_sequence_view(v)]
    request = erasure_request(sequence_views, entities, views, before)
    missing = [f for f in reports if not Path(f).is_dir()]
    if missing:
        raise SequenceInputError(f"reports={missing}: no such folder (give consistency --out folders).")
    counts = erase_online(store.config, sequence_views, request, on_erased)
    log_rows, logs_left = remove_log_rows(store, request.entities)
    report_files = remove_report_rows(reports)
    result = ErasureResult(
        len(request.entities),
        request.views,
        request.before,
        request.made_at,
        counts.events,
        log_rows,
        report_files,
        logs_left,
    )
    append_audit(
        store.config,
        {
            "by": by or getpass.getuser(),
            "made_at": request.made_at.isoformat(),
            "views": list(request.views) if request.views else None,
            "before": request.before.isoformat(),
            "entities": len(request.entities),
            "entities_sha256": entities_digest(request.entities),
            "events_erased": counts.events,
            "log_rows_removed": log_rows,
            "report_files_removed": report_files,
        },
    )
    return result


def reapply(store: FeatureStore) -> ErasedCounts:
    """Every marker of the offline copy applied to Redis again (after Redis lost data)."""
    sequence_views = [sequence_settings(v) for v in store.list_feature_views() if is_sequence_view(v)]
    return reapply_erasures(store.config, sequence_views)


def remove_log_rows(store: FeatureStore, entities: Sequence[Mapping[str, Any]]) -> Tuple[int, Tuple[str, ...]]:
    """Rewrite every file serving log of the project's use cases without the entities' rows (each
    file replaced atomically); returns the rows removed and the use cases whose logs are not files."""
    from feast.infra.offline_stores.file_source import FileLoggingDestination

    removed, elsewhere = 0, []
    for service in store.list_feature_services():
        if not is_use_case(service) or service.logging_config is None:
            continue
        destination = service.logging_config.destination
        if not isinstance(destination, FileLoggingDestination):
            elsewhere.append(service.name)
            continue
        for path in logged_files(store.config, destination):
            removed += _rewrite_without(path, entities)
    return removed, tuple(elsewhere)


def _rewrite_without(path: Path, entities: Sequence[Mapping[str, Any]]) -> int:
    table = pq.read_table(path)
    matched = rows_of(table, entities)
    if not matched.any():
        return 0
    kept = table.filter(pa.array(~matched))
    temporary = path.with_name(f".{path.name}.erasing")
    pq.write_table(kept, temporary, coerce_timestamps="us")
    os.replace(temporary, path)  # readers see the old file or the new one, never half of it
    return int(matched.sum())


def rows_of(table: pa.Table, entities: Sequence[Mapping[str, Any]]) -> Any:
    """A boolean numpy mask of the table's rows that belong to one of the entities (all its join
    keys equal); entities with a join key the table lacks match nothing."""
    import numpy as np

    mask = np.zeros(table.num_rows, dtype=bool)
    by_keys: Dict[FrozenSet[str], List[Tuple[Any, ...]]] = {}
    for entity in entities:
        by_keys.setdefault(frozenset(entity), []).append(tuple(entity[k] for k in sorted(entity)))
    for keys, values in by_keys.items():
        names = sorted(keys)
        if not set(names) <= set(table.column_names):
            continue
        frame = pd.DataFrame({n: table.column(n).to_pylist() for n in names})
        mask |= pd.MultiIndex.from_frame(frame).isin(values)
    return mask


def remove_report_rows(folders: Sequence[str]) -> int:
    """Delete the consistency job's per-row results (``rows.parquet``) under the folders: their rows
    refer to log rows by position and were computed from the erased sequences, so they cannot be
    rewritten; ``summary.json`` and ``report.html`` hold aggregates only and stay. Re-running
    ``feast-sequence consistency`` regenerates them from the rewritten logs. Returns files deleted."""
    removed = 0
    for folder in folders:
        for path in Path(folder).rglob(ROWS_FILE):
            path.unlink()
            removed += 1
    return removed
