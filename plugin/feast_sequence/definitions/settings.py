"""Sequence settings: the typed, frozen description of a sequence view, stored as reserved tags.

Feast rebuilds plain ``FeatureView`` objects from its registry (a fresh ``FeatureStore``, the feature
server, Spark executors), so subclass attributes do not survive. Tags do: every setting is written to
namespaced tags at definition time and read back by :func:`sequence_settings` from any view object.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from feast.value_type import ValueType

from feast_sequence.definitions.element_types import EVENT_FIELD_TYPES, element_value_type
from feast_sequence.definitions.enrichment import Enrichment
from feast_sequence.definitions.tags import (
    TAG_DEDUP_BY,
    TAG_ENRICH,
    TAG_FIELD_NUMBERS,
    TAG_FORMAT,
    TAG_MAX_LENGTH,
    TAG_PREFIX,
    TAG_TIMESTAMP_FIELD,
    is_sequence_view,
)

__all__ = [  # re-exported: callers read every setting from this module
    "EVENT_FIELD_TYPES",
    "TAG_PREFIX",
    "element_value_type",
    "is_sequence_view",
]
from feast_sequence.errors import SequenceDefinitionError

#: Version of the stored event encoding; bumped when the Redis layout changes incompatibly.
#: "2": field numbers come from field names (``stable_field_number``), not schema positions.
STORAGE_FORMAT = "2"

#: Stored field numbers are drawn from [16, 2047]: every field's tag is a 2-byte varint (numbers
#: 1 and 2 are the timestamp's). A 3-byte range would make collisions rarer but cost 40% more
#: Redis memory per event on the benchmark (docs/benchmarks.md); a collision is a definition
#: error resolved with ``field_numbers``.
FIRST_FIELD_NUMBER, LAST_FIELD_NUMBER = 16, 2047

#: Hard cap on max_length. Reads return whole sequences in one reply, so the cap bounds reply size.
MAX_LENGTH_CAP = 100_000


@dataclass(frozen=True)
class EventField:
    """One field of an event: its name and the Feast value type of a single event's value."""

    name: str
    value_type: ValueType
    number: int = 0
    """Stored field number (protobuf field number in the stored event); 0 means
    ``stable_field_number(name)``. Fixed for the life of the stored data: see docs/concepts.md,
    "Definition changes"."""
    enriched: bool = False
    """Computed at index time from an enrichment (stored, not a Feast feature of the view)."""

    @property
    def stored_number(self) -> int:
        return self.number or stable_field_number(self.name)


def stable_field_number(name: str) -> int:
    """A field's stored number, a function of its name only: removing, reordering or adding other
    fields never changes it, so events stored under an earlier definition keep their meaning."""
    span = LAST_FIELD_NUMBER - FIRST_FIELD_NUMBER + 1
    return FIRST_FIELD_NUMBER + zlib.crc32(name.encode("utf-8")) % span


@dataclass(frozen=True)
class SequenceSettings:
    """What a sequence is: which events it keeps, how they are identified, ordered, capped and expired.

    ``fields`` are the event fields in schema order; ``timestamp_field`` is the source's timestamp
    column, also served as a list of the events' timestamps.
    """

    view_name: str
    join_keys: Tuple[Tuple[str, ValueType], ...]  # (join key, value type), in the view's order
    fields: Tuple[EventField, ...]
    timestamp_field: str
    max_length: int
    dedup_by: Tuple[str, ...]
    ttl_us: Optional[int]  # exact, a whole number of milliseconds; None = no TTL
    enrichments: Tuple[Enrichment, ...] = ()  # computed at index time and stored in the events

    @property
    def field_names(self) -> Tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def event_fields(self) -> Tuple[EventField, ...]:
        """The fields events arrive with (the view's Feast schema), without index-time enriched ones."""
        return tuple(f for f in self.fields if not f.enriched)

    @property
    def event_field_names(self) -> Tuple[str, ...]:
        return tuple(f.name for f in self.event_fields)

    @property
    def served_names(self) -> Tuple[str, ...]:
        """Every feature name a sequence view serves: the event fields, then the timestamp field."""
        return self.event_field_names + (self.timestamp_field,)

    def field(self, name: str) -> EventField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def validate_max_length(view_name: str, max_length: Any) -> int:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not (1 <= max_length <= MAX_LENGTH_CAP):
        raise SequenceDefinitionError(
            f"Sequence view '{view_name}': max_length={max_length!r} is invalid; "
            f"use an integer from 1 to {MAX_LENGTH_CAP}."
        )
    return max_length


def validate_dedup_by(view_name: str, dedup_by: Optional[Sequence[str]], field_names: Sequence[str]) -> Tuple[str, ...]:
    if dedup_by is None:
        return ()
    if isinstance(dedup_by, str):
        raise SequenceDefinitionError(
            f"Sequence view '{view_name}': dedup_by={dedup_by!r} must be a list of field names, "
            f"e.g. dedup_by=[{dedup_by!r}]."
        )
    names = tuple(dedup_by)
    if not names:
        raise SequenceDefinitionError(
            f"Sequence view '{view_name}': dedup_by=[] is empty; omit it to deduplicate exact "
            "duplicates only, or name at least one field."
        )
    for name in names:
        if name not in field_names:
            raise SequenceDefinitionError(
                f"Sequence view '{view_name}': dedup_by names unknown field {name!r}; "
                f"valid fields: {', '.join(sorted(field_names))}."
            )
    if len(set(names)) != len(names):
        raise SequenceDefinitionError(f"Sequence view '{view_name}': dedup_by={list(names)} names a field twice.")
    return names


def settings_tags(
    max_length: int,
    dedup_by: Tuple[str, ...],
    timestamp_field: str,
    field_numbers: Mapping[str, int],
    enrichments: Sequence[Enrichment] = (),
) -> Dict[str, str]:
    tags = {
        TAG_FORMAT: STORAGE_FORMAT,
        TAG_MAX_LENGTH: str(max_length),
        TAG_DEDUP_BY: json.dumps(list(dedup_by)),
        TAG_TIMESTAMP_FIELD: timestamp_field,
        TAG_FIELD_NUMBERS: json.dumps(dict(field_numbers), sort_keys=True),
    }
    if enrichments:
        tags[TAG_ENRICH] = json.dumps([e.to_json() for e in enrichments], sort_keys=True)
    return tags


def assign_field_numbers(
    view_name: str, stored_names: Sequence[str], overrides: Optional[Mapping[str, int]] = None
) -> Dict[str, int]:
    """Stored number of every stored field (event and enriched): ``stable_field_number`` unless
    ``overrides`` names one. Two fields may not share a number."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(stored_names))
    if unknown:
        raise SequenceDefinitionError(
            f"Sequence view '{view_name}': field_numbers names unknown field(s) {unknown}; "
            f"valid fields: {', '.join(stored_names)}."
        )
    numbers: Dict[str, int] = {}
    owner: Dict[int, str] = {}
    for name in stored_names:
        number = overrides.get(name, stable_field_number(name))
        if (
            isinstance(number, bool)
            or not isinstance(number, int)
            or not (FIRST_FIELD_NUMBER <= number <= LAST_FIELD_NUMBER)
        ):
            raise SequenceDefinitionError(
                f"Sequence view '{view_name}': field_numbers[{name!r}]={number!r} is invalid; use an "
                f"integer from {FIRST_FIELD_NUMBER} to {LAST_FIELD_NUMBER}."
            )
        if number in owner:
            raise SequenceDefinitionError(
                f"Sequence view '{view_name}': fields {owner[number]!r} and {name!r} would share stored "
                f"field number {number}; rename one, or give it another number with "
                f"field_numbers={{{name!r}: N}} ({FIRST_FIELD_NUMBER} <= N <= {LAST_FIELD_NUMBER})."
            )
        owner[number] = name
        numbers[name] = number
    return numbers


def enriched_fields(
    view_name: str, enrichments: Sequence[Enrichment], event_fields: Sequence[str]
) -> Tuple[EventField, ...]:
    """The stored (not Feast-visible) fields of a view's index-time enrichments, after its events'."""
    out = []
    taken = set(event_fields)
    for enrichment in enrichments:
        if enrichment.on not in event_fields:
            raise SequenceDefinitionError(
                f"Sequence view '{view_name}': enrichment from '{enrichment.view}' joins on "
                f"{enrichment.on!r}, which is not an event field ({', '.join(event_fields)})."
            )
        for (_, value_type), output in zip(enrichment.features, enrichment.output_names):
            if output in taken:
                raise SequenceDefinitionError(
                    f"Sequence view '{view_name}': enriched field {output!r} collides with another "
                    "field; give the enrichment a prefix."
                )
            taken.add(output)
            out.append(EventField(output, value_type, enriched=True))
    return tuple(out)


def sequence_settings(view: Any) -> SequenceSettings:
    """Recover the sequence settings of a view object, whatever Feast rebuilt it as.

    Raises ``SequenceDefinitionError`` when the view is not a sequence view or its tags are corrupt.
    """
    name = getattr(view, "name", "<unnamed view>")
    tags = getattr(view, "tags", None) or {}
    if TAG_MAX_LENGTH not in tags:
        raise SequenceDefinitionError(f"Feature view '{name}' is not a sequence view.")
    fmt = tags.get(TAG_FORMAT)
    if fmt != STORAGE_FORMAT:
        raise SequenceDefinitionError(
            f"Sequence view '{name}': storage format {fmt!r} is not supported by this version of "
            f"feast-sequence (expected {STORAGE_FORMAT!r}). Rebuild it with `feast-sequence reindex "
            f"--repo <repo> --view {name}` (format '1' numbered fields by schema position)."
        )
    try:
        max_length = int(tags[TAG_MAX_LENGTH])
        dedup_raw = json.loads(tags.get(TAG_DEDUP_BY, "[]"))
        enrichments = tuple(Enrichment.from_json(e) for e in json.loads(tags.get(TAG_ENRICH, "[]")))
    except (KeyError, TypeError, ValueError) as exc:
        raise SequenceDefinitionError(
            f"Sequence view '{name}': reserved tags {TAG_PREFIX}* are corrupt: {exc}"
        ) from exc
    timestamp_field = tags.get(TAG_TIMESTAMP_FIELD, "")
    if not timestamp_field:
        raise SequenceDefinitionError(f"Sequence view '{name}': tag {TAG_TIMESTAMP_FIELD!r} is missing.")
    try:
        numbers = json.loads(tags[TAG_FIELD_NUMBERS])
    except (KeyError, TypeError, ValueError) as exc:
        raise SequenceDefinitionError(
            f"Sequence view '{name}': tag {TAG_FIELD_NUMBERS!r} is missing or corrupt: {exc}"
        ) from exc
    event_fields = tuple(
        EventField(f.name, element_value_type(name, f.name, f.dtype))
        for f in view.features
        if f.name != timestamp_field
    )
    field_names = [f.name for f in event_fields]
    unnumbered = enriched_fields(name, enrichments, field_names)
    fields = []
    for f in event_fields + unnumbered:
        if not isinstance(numbers.get(f.name), int):
            raise SequenceDefinitionError(
                f"Sequence view '{name}': tag {TAG_FIELD_NUMBERS!r} has no number for field {f.name!r}."
            )
        fields.append(EventField(f.name, f.value_type, numbers[f.name], f.enriched))
    return SequenceSettings(
        view_name=name,
        join_keys=tuple((c.name, c.dtype.to_value_type()) for c in view.entity_columns),
        fields=tuple(fields),
        timestamp_field=timestamp_field,
        max_length=validate_max_length(name, max_length),
        dedup_by=validate_dedup_by(name, dedup_raw or None, field_names),
        ttl_us=ttl_us_of(name, getattr(view, "ttl", None)),
        enrichments=enrichments,
    )


def ttl_us_of(view_name: str, ttl: Any) -> Optional[int]:
    """A view's TTL in microseconds (None for none), exact. Redis expires keys with millisecond
    precision, so a TTL must be a whole number of milliseconds: anything finer is refused rather
    than silently rounded."""
    if ttl is None or (isinstance(ttl, timedelta) and ttl == timedelta(0)):
        return None
    if not isinstance(ttl, timedelta) or ttl < timedelta(0):
        raise SequenceDefinitionError(
            f"Sequence view '{view_name}': ttl={ttl!r} must be a non-negative timedelta or None."
        )
    if ttl % timedelta(milliseconds=1):
        raise SequenceDefinitionError(
            f"Sequence view '{view_name}': ttl={ttl!r} is not a whole number of milliseconds; Redis "
            "expires keys to the millisecond, so round it (e.g. timedelta(milliseconds=1500))."
        )
    return ttl // timedelta(microseconds=1)
