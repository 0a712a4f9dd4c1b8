"""Erasure markers on the offline side, and training data without erased events.

Redis holds each erased entity's marker beside its sequences (storage/erasure.py), where every writer
checks it. This module keeps the durable copy: one JSON line per marker in ``markers.jsonl`` under
the online store's ``erasures_path`` (relative to the repository), written before Redis is touched,
so a Redis that lost its data can be given its markers back (``feast-sequence erase --reapply``, also
run by every offline job and materialization before it writes), and training data can leave erased
events out even when the offline source still holds them. ``audit.jsonl`` beside it records each
erase: who, when, which views, up to when, how many entities and events, and a digest of the entity
keys, never the erased events. docs/privacy.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from feast.value_type import ValueType

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import SequenceInputError
from feast_sequence.storage.conversion import datetime_to_us, timestamps_to_us
from feast_sequence.storage.entity_keys import entity_column_bytes, entity_key_bytes

MARKERS_FILE, AUDIT_FILE = "markers.jsonl", "audit.jsonl"
_INTEGERS = (ValueType.INT32, ValueType.INT64)
_ERASED_TO = "__fsq_erased_to_us"


@dataclass(frozen=True)
class ErasureMarker:
    """An erased entity: its join key values, the views it was erased from (None: every view,
    later ones included), the time up to which (inclusive) its events are erased, and when."""

    entity: Mapping[str, Any]
    views: Optional[Tuple[str, ...]]
    before: datetime
    made_at: datetime

    def applies_to(self, settings: SequenceSettings) -> bool:
        """Whether the marker covers the view: it is named (or all are) and has the same join keys."""
        named = self.views is None or settings.view_name in self.views
        return named and set(self.entity) == {name for name, _ in settings.join_keys}

    def entity_key(self, settings: SequenceSettings) -> bytes:
        """The entity's key bytes in a view it applies to (values of the view's join key types)."""
        return entity_key_bytes([(name, t, typed_value(self.entity, name, t)) for name, t in settings.join_keys])

    def to_json(self) -> str:
        return json.dumps(
            {
                "entity": dict(self.entity),
                "views": list(self.views) if self.views is not None else None,
                "before": self.before.isoformat(),
                "made_at": self.made_at.isoformat(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, line: str) -> "ErasureMarker":
        record = json.loads(line)
        views = tuple(record["views"]) if record["views"] is not None else None
        before, made_at = datetime.fromisoformat(record["before"]), datetime.fromisoformat(record["made_at"])
        return cls(record["entity"], views, before, made_at)


def typed_value(entity: Mapping[str, Any], name: str, value_type: ValueType) -> Any:
    """A join key value as its type wants it; raises ``SequenceInputError`` naming key and value."""
    value = entity[name]
    if value_type in _INTEGERS:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
            raise SequenceInputError(f"Entity {dict(entity)}: {name}={value!r} is not an integer ({value_type.name}).")
        return int(value)
    if value_type == ValueType.STRING:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise SequenceInputError(f"Entity {dict(entity)}: {name}={value!r} is not a string.")
        return str(value)
    raise SequenceInputError(
        f"Entity {dict(entity)}: join key {name!r} has type {value_type.name}; erase supports int32, int64 "
        "and string join keys."
    )


def erasures_folder(config: Any) -> Path:
    """The folder of the offline copy: the online store's ``erasures_path``, relative to the repository."""
    path = Path(config.online_store.erasures_path)
    if not path.is_absolute() and config.repo_path is not None:
        path = Path(config.repo_path) / path
    return path


def read_markers(config: Any) -> List[ErasureMarker]:
    """Every marker of the offline copy, oldest first (none if nothing was ever erased)."""
    path = erasures_folder(config) / MARKERS_FILE
    if not path.exists():
        return []
    return [ErasureMarker.from_json(line) for line in path.read_text().splitlines() if line.strip()]


def append_markers(config: Any, markers: Sequence[ErasureMarker]) -> None:
    """Add markers to the offline copy, flushed to disk before the erase touches Redis."""
    _append_lines(erasures_folder(config) / MARKERS_FILE, [m.to_json() for m in markers])


def append_audit(config: Any, record: Mapping[str, Any]) -> None:
    """Add one erase's audit record (no erased data: counts and a digest of the entity keys)."""
    _append_lines(erasures_folder(config) / AUDIT_FILE, [json.dumps(dict(record), sort_keys=True, default=str)])


def read_audit(config: Any) -> List[Dict[str, Any]]:
    path = erasures_folder(config) / AUDIT_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def entities_digest(entities: Sequence[Mapping[str, Any]]) -> str:
    """A sha256 of the erased entity keys: lets an auditor check a list against a record without
    the record holding the keys."""
    lines = sorted(json.dumps(dict(e), sort_keys=True, default=str) for e in entities)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _append_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write("".join(line + "\n" for line in lines))
        out.flush()
        os.fsync(out.fileno())


def erased_to_us(settings: SequenceSettings, markers: Sequence[ErasureMarker]) -> Dict[bytes, int]:
    """Per erased entity key of the view, the time (µs, inclusive) up to which its events are erased."""
    erased: Dict[bytes, int] = {}
    for marker in markers:
        if marker.applies_to(settings):
            key, to_us = marker.entity_key(settings), datetime_to_us(marker.before)
            erased[key] = max(erased.get(key, to_us), to_us)
    return erased


def drop_erased_pandas(
    settings: SequenceSettings, events: pd.DataFrame, markers: Sequence[ErasureMarker]
) -> pd.DataFrame:
    """The events without those of erased entities at or before their marker's time."""
    erased = erased_to_us(settings, markers)
    if not erased or events.empty:
        return events
    keys = entity_column_bytes(settings.join_keys, events)
    times = timestamps_to_us(settings.timestamp_field, events[settings.timestamp_field])
    limits = np.fromiter((erased.get(k, np.iinfo(np.int64).min) for k in keys), dtype=np.int64, count=len(keys))
    return events[np.asarray(times, dtype=np.int64) > limits]


def drop_erased_spark(settings: SequenceSettings, events: Any, markers: Sequence[ErasureMarker]) -> Any:
    """The Spark twin of :func:`drop_erased_pandas`: a broadcast join with the view's markers."""
    erased = [m for m in markers if m.applies_to(settings)]
    if not erased:
        return events
    from pyspark.sql import functions as F

    names = [name for name, _ in settings.join_keys]
    rows = [(*[typed_value(m.entity, n, t) for n, t in settings.join_keys], datetime_to_us(m.before)) for m in erased]
    types = {n: ("bigint" if t in _INTEGERS else "string") for n, t in settings.join_keys}
    schema = ", ".join([f"`{n}` {types[n]}" for n in names] + [f"{_ERASED_TO} bigint"])
    limits = events.sparkSession.createDataFrame(rows, schema).groupBy(*names).agg(F.max(_ERASED_TO).alias(_ERASED_TO))
    joined = events.join(F.broadcast(limits), on=names, how="left")
    kept = F.col(_ERASED_TO).isNull() | (F.unix_micros(F.col(settings.timestamp_field)) > F.col(_ERASED_TO))
    return joined.filter(kept).drop(_ERASED_TO)
