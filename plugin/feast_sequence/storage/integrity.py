"""Corrupt stored sequences: the error that names the view, entity and Redis key, the metric that
counts them, and the log line. Reads, compaction and ``feast-sequence verify`` report through here.

A block's own checks (checksum, layout) live in storage/blocks.py and know nothing of where the
block is stored; this module adds the where.
"""

from __future__ import annotations

import logging
from typing import Any, Dict

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import CorruptSequenceError
from feast_sequence.lazy_metrics import LazyMetrics

_log = logging.getLogger(__name__)


def _define(prometheus: Any) -> Dict[str, Any]:
    return {
        "CORRUPT_SEQUENCES": prometheus.Counter(
            "feast_sequence_corrupt_sequences_total",
            "Stored sequences found corrupt (a block failing its checksum or not decoding), by view "
            "and by where: 'read' (served without events, or failing a fail-closed use case's request), "
            "'compaction' (left uncompacted)",
            ["view", "where"],
        ),
    }


_METRICS = LazyMetrics(__name__, ("CORRUPT_SEQUENCES",), _define)


def __getattr__(name: str) -> Any:
    return _METRICS.attribute(name)


def entity_text(settings: SequenceSettings, key: bytes) -> str:
    """The entity of one of a sequence's Redis keys, as ``join_key=value``: entity key bytes hold
    each join key (sorted by name) as a type letter, a varint length and the value."""
    start, end = key.find(b":{"), key.rfind(b"}:")
    data = key[start + 2 : end] if 0 <= start < end else b""
    names = sorted(name for name, _ in settings.join_keys)
    parts, pos = [], 0
    try:
        for name in names:
            letter = data[pos : pos + 1]
            size, shift, pos = 0, 0, pos + 1
            while True:
                byte = data[pos]
                pos += 1
                size |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            raw = data[pos : pos + size]
            pos += size
            parts.append(f"{name}={raw.hex() if letter == b'b' else raw.decode('utf-8', 'replace')}")
    except IndexError:
        return repr(data)
    return ", ".join(parts)


def corrupt(settings: SequenceSettings, key: bytes, error: CorruptSequenceError) -> CorruptSequenceError:
    """``error`` (a block's own complaint) as the error of one stored sequence: its view, entity and key."""
    entity = entity_text(settings, key)
    return CorruptSequenceError(
        f"Sequence view '{settings.view_name}', entity {entity}: the stored sequence at Redis key "
        f"{key!r} is corrupt ({error}). Rebuild it from the offline source with `feast-sequence verify "
        f"--view {settings.view_name} --repair`.",
        view=settings.view_name,
        entity=entity,
        key=key,
    )


def count(error: CorruptSequenceError, where: str) -> None:
    """Count a corrupt sequence met by a read or a compaction (``where``)."""
    _METRICS.all()["CORRUPT_SEQUENCES"].labels(error.view or "", where).inc()


def report(error: CorruptSequenceError, where: str, consequence: str) -> None:
    """Count and log a corrupt sequence that the caller goes on without (``consequence`` says how)."""
    count(error, where)
    _log.error("%s %s", error, consequence)
