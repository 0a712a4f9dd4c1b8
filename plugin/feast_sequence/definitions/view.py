"""``SequenceFeatureView``: a Feast feature view whose features are the last N events of an entity."""

from __future__ import annotations

from datetime import timedelta
from typing import Dict, List, Mapping, Optional, Sequence, Set

from feast import Entity, FeatureView, Field, PushSource
from feast.data_source import DataSource
from feast.types import Array, UnixTimestamp, from_value_type
from feast.value_type import ValueType

from feast_sequence.definitions.enrichment import Enrichment
from feast_sequence.definitions.settings import (
    TAG_PREFIX,
    assign_field_numbers,
    element_value_type,
    enriched_fields,
    settings_tags,
    ttl_us_of,
    validate_dedup_by,
    validate_max_length,
)
from feast_sequence.errors import SequenceDefinitionError


class SequenceFeatureView(FeatureView):
    """One sequence dataset per event type: for each entity, its ``max_length`` newest events.

    ``schema`` lists the event fields with their scalar types; each is served as a list (``Array``)
    aligned by position, newest first. The source's timestamp field is served too, as
    ``Array(UnixTimestamp)``. Semantics (identity, ordering, TTL) are in ``docs/concepts.md``.

    ``ttl`` must be a whole number of milliseconds (Redis expires keys to the millisecond).

    Each stored field (event fields and enriched ones) has a stored field number derived from its
    name, recorded in the registry with the view: removing or reordering fields never changes the
    meaning of stored events. ``field_numbers={"name": n}`` picks another number for a field in the
    rare case that two names collide (the definition error says so). ``feast apply`` refuses changes
    that would change served answers (docs/concepts.md, "Definition changes").

    ``enrich`` lists enrichments computed at index time: each event is joined with the named view
    when it is written (pushes, materialization, the Spark jobs) and the joined features are stored
    in the event. They are not Feast features of the view (pushes need not carry them); a use case
    asking for the same enrichment is served from the stored values instead of joining at serving
    time. See docs/serving.md.

    The settings live in reserved ``feast_sequence.*`` tags so they survive the registry; recover them
    from any view object with :func:`feast_sequence.sequence_settings`.
    """

    def __init__(
        self,
        *,
        name: str,
        entities: List[Entity],
        source: DataSource,
        schema: List[Field],
        max_length: int,
        dedup_by: Optional[Sequence[str]] = None,
        ttl: Optional[timedelta] = None,
        enrich: Optional[Sequence[Enrichment]] = None,
        field_numbers: Optional[Mapping[str, int]] = None,
        online: bool = True,
        offline: bool = False,
        description: str = "",
        tags: Optional[Dict[str, str]] = None,
        owner: str = "",
    ):
        validate_max_length(name, max_length)
        timestamp_field = _timestamp_field_of(name, source)
        join_keys = [e.join_key for e in entities]
        enrichments = tuple(enrich or ())
        _check_enrichments(name, schema, enrichments)
        features = _served_schema(name, schema, timestamp_field, join_keys)
        field_names = [f.name for f in schema]
        dedup = validate_dedup_by(name, dedup_by, field_names)
        user_tags = dict(tags or {})
        reserved = sorted(k for k in user_tags if k.startswith(TAG_PREFIX))
        if reserved:
            raise SequenceDefinitionError(
                f"Sequence view '{name}': tags {reserved} use the reserved prefix {TAG_PREFIX!r}."
            )
        ttl_us_of(name, ttl)
        stored_names = field_names + [f.name for f in enriched_fields(name, enrichments, field_names)]
        numbers = assign_field_numbers(name, stored_names, field_numbers)
        entity_fields = [
            Field(name=e.join_key, dtype=from_value_type(e.value_type))
            for e in entities
            if e.value_type not in (None, ValueType.UNKNOWN)
        ]
        super().__init__(
            name=name,
            entities=entities,
            source=source,
            schema=entity_fields + features,
            ttl=ttl if ttl is not None else timedelta(0),
            online=online,
            offline=offline,
            description=description,
            tags={**user_tags, **settings_tags(max_length, dedup, timestamp_field, numbers, enrichments)},
            owner=owner,
        )

    @classmethod
    def from_proto(cls, feature_view_proto, skip_udf: bool = False):  # type: ignore[no-untyped-def]
        """Registry objects come back as plain ``FeatureView``s; the settings live in their tags."""
        return FeatureView.from_proto(feature_view_proto, skip_udf=skip_udf)


def _check_enrichments(view_name: str, schema: List[Field], enrichments: Sequence[Enrichment]) -> None:
    declared = {f.name: f for f in schema}
    for enrichment in enrichments:
        if not isinstance(enrichment, Enrichment):
            raise SequenceDefinitionError(
                f"Sequence view '{view_name}': enrich takes enrich(view, on=...) objects, got {enrichment!r}."
            )
        if enrichment.cache is not None:
            raise SequenceDefinitionError(
                f"Sequence view '{view_name}': enrichment from '{enrichment.view}' has a cache, but index-time "
                "enrichments are looked up once per write; declare the cache on the use case's enrichment."
            )
        on = declared.get(enrichment.on)
        if on is None or element_value_type(view_name, on.name, on.dtype) != enrichment.key_type:
            raise SequenceDefinitionError(
                f"Sequence view '{view_name}': enrichment from '{enrichment.view}' joins on "
                f"{enrichment.on!r}, which must be an event field of type {enrichment.key_type.name}."
            )
    enriched_fields(view_name, enrichments, list(declared))


def _timestamp_field_of(view_name: str, source: DataSource) -> str:
    batch = source.batch_source if isinstance(source, PushSource) else source
    timestamp_field = getattr(batch, "timestamp_field", "") if batch is not None else ""
    if not timestamp_field:
        raise SequenceDefinitionError(
            f"Sequence view '{view_name}': source '{source.name}' has no timestamp field; "
            "set timestamp_field on its batch source, events are ordered by it."
        )
    return timestamp_field


def _served_schema(view_name: str, schema: List[Field], timestamp_field: str, join_keys: List[str]) -> List[Field]:
    """Event fields become list features; the timestamp field is appended as a list of timestamps."""
    if not schema:
        raise SequenceDefinitionError(f"Sequence view '{view_name}': schema has no event fields.")
    seen: Set[str] = set()
    served = []
    for f in schema:
        if f.name in seen:
            raise SequenceDefinitionError(f"Sequence view '{view_name}': field {f.name!r} is declared twice.")
        seen.add(f.name)
        if f.name == timestamp_field or f.name in join_keys or f.name.startswith("__"):
            raise SequenceDefinitionError(
                f"Sequence view '{view_name}': field name {f.name!r} is reserved (the timestamp "
                "field, a join key, or a name starting with '__'); rename the event field."
            )
        if isinstance(f.dtype, Array):
            raise SequenceDefinitionError(
                f"Sequence view '{view_name}': field {f.name!r} has type {f.dtype}; event fields "
                "must be scalars (each event holds one value; the view serves them as a list)."
            )
        element = element_value_type(view_name, f.name, f.dtype)
        served.append(
            Field(
                name=f.name,
                dtype=Array(from_value_type(element)),
                description=f.description,
                tags=f.tags,
            )
        )
    served.append(Field(name=timestamp_field, dtype=Array(UnixTimestamp)))
    return served
