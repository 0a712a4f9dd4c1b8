"""Definition changes against the stored data: what `feast apply` may change in place, what it must
refuse, and the record of what a view's stored events were written with. Pure logic, no I/O.

The record lives next to the data (one Redis hash per project, see ``_keys.definitions_key``), because
what matters is what the *stored bytes* mean: which stored field number holds which field and type,
which numbers were retired, how identities and entity keys were encoded, the TTL the keys'
expiry was set with, the longest sequence they may hold, and since when the served window (TTL and
``max_length``) is the current one. The compatibility table is in docs/concepts.md, "Definition
changes": a change may make stored sequences serve fewer events, never more, because the offline
replay (training data) has every event of the source, and what Redis trimmed or expired is gone.

Stored events are kept in the current definition's encoding (``reencoded``): identity without
``dedup_by``, ties and the kept version compare member bytes, so an event stored before a field was
added or removed must have the bytes the same event pushed now has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Dict, List, Optional, Tuple

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import SequenceDefinitionError
from feast_sequence.storage.blocks import Events
from feast_sequence.storage.codec import column_per_event, encode_columns, layout_for


@dataclass(frozen=True)
class StoredDefinition:
    """What one view's stored events were written with."""

    fields: Dict[str, Tuple[int, str]]  # field name -> (stored number, value type name)
    # number of a removed field -> (its name, value type name, whether it was an enriched field)
    retired: Dict[int, Tuple[str, str, bool]] = field(default_factory=dict)
    enriched: Tuple[str, ...] = ()  # fields computed by index-time enrichments
    dedup_by: Tuple[str, ...] = ()
    join_keys: Tuple[Tuple[str, str], ...] = ()  # (join key, value type name)
    ttl_us: Optional[int] = None
    max_length: Optional[int] = None  # None in records written before it was recorded
    # When the current TTL and max_length took effect (µs since the epoch; None: before records had
    # it). Rows served before it were cut under another window: the consistency job skips them.
    window_since_us: Optional[int] = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "fields": {name: list(spec) for name, spec in self.fields.items()},
                "retired": {str(n): list(spec) for n, spec in self.retired.items()},
                "enriched": list(self.enriched),
                "dedup_by": list(self.dedup_by),
                "join_keys": [list(k) for k in self.join_keys],
                "ttl_us": self.ttl_us,
                "max_length": self.max_length,
                "window_since_us": self.window_since_us,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> "StoredDefinition":
        raw = json.loads(text)
        return cls(
            fields={name: (int(n), str(t)) for name, (n, t) in raw["fields"].items()},
            retired={int(n): (str(name), str(t), bool(e)) for n, (name, t, e) in raw["retired"].items()},
            enriched=tuple(raw["enriched"]),
            dedup_by=tuple(raw["dedup_by"]),
            join_keys=tuple((k, t) for k, t in raw["join_keys"]),
            ttl_us=raw["ttl_us"],
            max_length=raw.get("max_length"),
            window_since_us=raw.get("window_since_us"),
        )

    def encodes_like(self, other: "StoredDefinition") -> bool:
        """Whether events stored under ``self`` have the bytes ``other`` gives the same event: the
        same fields, numbers and types. (Their order matters too, but Feast keeps a view's
        registered schema when only its order changes, so a reorder alone changes no encoding.)"""
        return self.fields == other.fields


def _definition_of(
    settings: SequenceSettings, retired: Dict[int, Tuple[str, str, bool]], window_since_us: Optional[int]
) -> StoredDefinition:
    return StoredDefinition(
        fields={f.name: (f.stored_number, f.value_type.name) for f in settings.fields},
        retired=retired,
        enriched=tuple(f.name for f in settings.fields if f.enriched),
        dedup_by=settings.dedup_by,
        join_keys=tuple((k, t.name) for k, t in settings.join_keys),
        ttl_us=settings.ttl_us,
        max_length=settings.max_length,
        window_since_us=window_since_us,
    )


def widens(previous: Optional[StoredDefinition], settings: SequenceSettings) -> List[str]:
    """What in ``settings`` would make stored sequences serve more events than they hold: a higher
    ``max_length``, or a longer or removed TTL. Events the tail trimmed, compaction dropped or
    whole-key expiry deleted cannot come back, while the offline replay still has them, so training
    data would differ from what is served (docs/concepts.md, "Definition changes")."""
    if previous is None:
        return []
    problems = []
    if previous.max_length is not None and settings.max_length > previous.max_length:
        problems.append(
            f"max_length rises from {previous.max_length} to {settings.max_length} "
            f"(stored sequences keep at most {previous.max_length} events; training data would have more)"
        )
    if previous.ttl_us is not None and (settings.ttl_us is None or settings.ttl_us > previous.ttl_us):
        new = "is removed" if settings.ttl_us is None else f"rises to {_duration(settings.ttl_us)}"
        problems.append(
            f"the TTL of {_duration(previous.ttl_us)} {new} (events older than it may already be "
            "deleted from Redis; training data would still have them)"
        )
    return problems


def evolve(
    previous: Optional[StoredDefinition],
    settings: SequenceSettings,
    applied_at_us: int,
    holds_sequences: bool = True,
) -> StoredDefinition:
    """The record after applying ``settings`` over ``previous`` (None: nothing stored yet) at
    ``applied_at_us``; ``holds_sequences`` says whether the view has stored sequences (only asked
    when the change ``widens`` the window: a view without any may widen freely).

    Raises ``SequenceDefinitionError`` listing every change that would change served answers for
    the stored events, with the two ways to make it.
    """
    if previous is None:
        return _definition_of(settings, {}, applied_at_us)
    problems: List[str] = widens(previous, settings) if holds_sequences else []
    join_keys = tuple((k, t.name) for k, t in settings.join_keys)
    if join_keys != previous.join_keys:
        problems.append(
            f"the entity key changes from {_keys_text(previous.join_keys)} to {_keys_text(join_keys)} "
            "(stored sequences are keyed by the old one)"
        )
    if settings.dedup_by != previous.dedup_by:
        problems.append(
            f"dedup_by changes from {list(previous.dedup_by) or None} to {list(settings.dedup_by) or None} "
            "(stored events were deduplicated by the old identity)"
        )
    retired = dict(previous.retired)
    numbers_in_use = {number: name for name, (number, _) in previous.fields.items()}
    for f in settings.fields:
        number, type_name = f.stored_number, f.value_type.name
        stored = previous.fields.get(f.name)
        if stored is not None:
            if stored[1] != type_name:
                problems.append(f"field {f.name!r} changes type from {stored[1]} to {type_name}")
            elif stored[0] != number:
                problems.append(f"field {f.name!r} changes stored number from {stored[0]} to {number}")
        elif number in retired and retired[number] == (f.name, type_name, True) and f.enriched:
            del retired[number]  # an enrichment back again: its stored values mean what they meant
        elif number in retired:
            problems.append(
                f"field {f.name!r} would reuse stored number {number} of the removed field "
                f"{retired[number][0]!r}, whose values stored events still hold"
            )
        elif number in numbers_in_use:
            problems.append(f"field {f.name!r} would reuse stored number {number} of field {numbers_in_use[number]!r}")
    if problems:
        raise SequenceDefinitionError(
            f"Sequence view '{settings.view_name}' cannot be changed in place: "
            + "; ".join(problems)
            + ". Stored events would be served differently, or differently from training data. Apply "
            "the new definition under a new view name, or rebuild this one from its batch source with "
            f"`feast-sequence reindex --repo <repo> --view {settings.view_name}` (it deletes the stored "
            "events, applies the repository and backfills the view)."
        )
    kept = {f.name for f in settings.fields}
    for name, (number, type_name) in previous.fields.items():
        if name not in kept:
            retired[number] = (name, type_name, name in previous.enriched)
    # A record without max_length (written before it was recorded) keeps its date for it.
    same_window = previous.ttl_us == settings.ttl_us and previous.max_length in (None, settings.max_length)
    return _definition_of(settings, retired, previous.window_since_us if same_window else applied_at_us)


def _duration(us: int) -> str:
    return str(timedelta(microseconds=us))


def _keys_text(keys: Tuple[Tuple[str, str], ...]) -> str:
    return ", ".join(f"{k} ({t})" for k, t in keys) or "none"


def reencoded(settings: SequenceSettings, events: Events) -> Events:
    """``events`` (one sequence's, newest first) as ``settings`` encodes them: values of removed fields
    dropped, a field an event was stored without given its null default, fields in the current
    order; then, as a sequence holds them, one version per identity, newest first with ties by
    member bytes. Costs a decode and an encode per event: `feast apply` runs it once per stored
    event when a view's fields change (compaction.rewrite), never per push or read."""
    if not len(events):
        return events
    layout = layout_for(settings)
    # One parse of the whole sequence (removed fields' elements are unknown to it, so dropped); a
    # field some events lack (added since) is read event by event, with its default where absent.
    message = layout.message_class.FromString(b"".join(events.members))
    columns = []
    for index in range(len(layout.fields)):
        column = getattr(message, f"f{index + 1}")
        aligned = len(column) == len(events)
        columns.append(list(column) if aligned else column_per_event(layout, events.members, f"f{index + 1}"))
    members, identities = encode_columns(layout, columns, events.scores)
    keys = identities if identities is not None else members
    best: Dict[bytes, Tuple[int, bytes, int]] = {}
    for score, member, key in zip(events.scores, members, keys):
        prefix = len(key) if identities is not None else 0
        if key not in best or (score, member) > best[key][:2]:
            best[key] = (score, member, prefix)
    kept = sorted(best.values(), reverse=True)
    return Events([k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept])
