"""Corrupt stored sequences: the error that names the view, entity and Redis key, the metric that
counts them, and the log line. Reads, compaction and ``feast-sequence verify`` report through here.

A block's own checks (checksum, layout) live in storage/blocks.py and know nothing of where the
block is stored; this module adds the where.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Sequence

from google.protobuf.message import DecodeError

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import CorruptSequenceError
from feast_sequence.lazy_metrics import LazyMetrics
from feast_sequence.storage import blocks, levels
from feast_sequence.storage.codec import layout_for

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


def entity_values(settings: SequenceSettings, key: bytes) -> Dict[str, Any]:
    """The join key values of one of a sequence's Redis keys (integers as int, strings as str, bytes
    as bytes): entity key bytes hold each join key, sorted by name, as a type letter, a varint length
    and the value (storage/codec.py). Raises ValueError for bytes that are not an entity key."""
    start, end = key.find(b":{"), key.rfind(b"}:")
    if not 0 <= start < end:
        raise ValueError(f"{key!r} is not a sequence key")
    data, pos = key[start + 2 : end], 0
    values: Dict[str, Any] = {}
    for name in sorted(name for name, _ in settings.join_keys):
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
        values[name] = int(raw) if letter == b"i" else raw.decode("utf-8") if letter == b"s" else raw
    return values


def entity_text(settings: SequenceSettings, key: bytes) -> str:
    """The entity of one of a sequence's Redis keys, as ``join_key=value, ...``."""
    try:
        values = entity_values(settings, key)
    except (ValueError, IndexError):
        return repr(key)
    return ", ".join(f"{name}={value.hex() if isinstance(value, bytes) else value}" for name, value in values.items())


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


def sequence_problems(
    settings: SequenceSettings, compacted: levels.Stored, tail: Sequence[bytes], identity_hash: Sequence[bytes]
) -> List[str]:
    """What is corrupt or incoherent in one stored sequence (scripts.VERIFY's reply: the blocks, the
    tail ``WITHSCORES`` newest first, the identity hash as ``HGETALL`` pairs); empty if nothing.

    A block (the base or a level) that fails its checks or whose events do not decode; tail events that do not decode or
    exceed ``max_length``; with ``dedup_by``, an identity hash entry that points at no tail event, or
    a tail event whose identity's entry does not point at it (the state appends rely on)."""
    problems: List[str] = []
    layout = layout_for(settings)
    named = [("block", compacted.base)] + [(f"level {n.decode()}", b) for n, b in sorted(compacted.levels.items())]
    for where, block in named:
        if not block:
            continue
        problem = blocks.problem(block)
        decoded = blocks.decode(block) if problem is None else None
        if problem is not None:
            problems.append(f"{where}: {problem}")
        elif decoded is not None and not _parses(layout, decoded.packed(decoded.count)):
            problems.append(f"{where}: its events do not decode as the view's events")
    members, scores = list(tail[0::2]), [int(float(s)) for s in tail[1::2]]
    if not _parses(layout, b"".join(members)):
        problems.append("tail: its events do not decode as the view's events")
    if len(members) > settings.max_length:
        problems.append(f"tail: holds {len(members)} events, more than max_length={settings.max_length}")
    fields = len(settings.dedup_by)
    if fields:
        identity_of = blocks.IdentityLength(fields)
        entries = {bytes(k): int(float(v)) for k, v in zip(identity_hash[0::2], identity_hash[1::2])}
        stored = {}
        for member, score in zip(members, scores):
            try:
                stored[member[: identity_of(member)]] = score
            except IndexError:
                continue  # undecodable, reported above
        for identity, score in sorted(entries.items()):
            if stored.get(identity) != score:
                problems.append(f"identity hash: entry {identity!r} (score {score}) points to no tail event")
        for identity, score in sorted(stored.items()):
            if identity not in entries:
                problems.append(f"identity hash: tail event {identity!r} (score {score}) has no entry")
    return problems


def _parses(layout: Any, data: bytes) -> bool:
    try:
        layout.message_class.FromString(data)
    except DecodeError:
        return False
    return True
