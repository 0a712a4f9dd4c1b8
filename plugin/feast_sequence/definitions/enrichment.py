"""Enrichments: joining each event of a sequence with a regular feature view by one of its fields.

One declaration serves both places an enrichment can run: on a sequence view (index time: looked
up when events are written and stored in them) or in a use case (serving time: joined on read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from feast import FeatureView
from feast.value_type import ValueType

from feast_sequence.definitions.element_types import element_value_type
from feast_sequence.definitions.tags import is_sequence_view
from feast_sequence.errors import SequenceDefinitionError


@dataclass(frozen=True)
class EnrichmentCache:
    """A serving-time enrichment's client-side cache of looked-up values (``docs/serving.md``).

    ``ttl_seconds`` bounds staleness: a value is served at most that long after its lookup was sent
    to Redis (keys with no value are cached alike). ``max_entries`` bounds memory: the cache never
    holds more keys; past it, the oldest half is evicted. Each online store instance keeps its own
    cache per enrichment (``serving/enrichment_cache.py``).
    """

    ttl_seconds: float
    max_entries: int

    def __post_init__(self) -> None:
        ttl = self.ttl_seconds
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
            raise SequenceDefinitionError(
                f"Enrichment cache: ttl_seconds={ttl!r} is invalid; use a positive number of seconds."
            )
        size = self.max_entries
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise SequenceDefinitionError(
                f"Enrichment cache: max_entries={size!r} is invalid; use a positive whole number."
            )

    def to_json(self) -> Dict[str, Any]:
        return {"ttl_seconds": self.ttl_seconds, "max_entries": self.max_entries}


@dataclass(frozen=True)
class Enrichment:
    """Join each event with a regular feature view by one of the event's fields.

    ``features`` are (name, value type) of the joined view; each becomes a field of the sequence,
    named ``prefix + name``. Built with :func:`enrich`. ``cache`` is how values are cached at
    serving time; it does not change what the enrichment is (equality, index time vs serving time).
    """

    view: str
    join_key: str
    key_type: ValueType
    on: str
    features: Tuple[Tuple[str, ValueType], ...]
    prefix: str = ""
    cache: Optional[EnrichmentCache] = field(default=None, compare=False)

    @property
    def output_names(self) -> Tuple[str, ...]:
        return tuple(self.prefix + name for name, _ in self.features)

    def to_json(self) -> Dict[str, Any]:
        raw: Dict[str, Any] = {
            "view": self.view,
            "join_key": self.join_key,
            "key_type": self.key_type.name,
            "on": self.on,
            "features": [[name, t.name] for name, t in self.features],
            "prefix": self.prefix,
        }
        if self.cache is not None:  # left out when off: tags written before caches stay the same
            raw["cache"] = self.cache.to_json()
        return raw

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Enrichment":
        cache = raw.get("cache")
        return cls(
            view=raw["view"],
            join_key=raw["join_key"],
            key_type=ValueType[raw["key_type"]],
            on=raw["on"],
            features=tuple((name, ValueType[t]) for name, t in raw["features"]),
            prefix=raw.get("prefix", ""),
            cache=None if cache is None else EnrichmentCache(**cache),
        )


def enrich(
    view: FeatureView,
    on: str,
    features: Optional[Sequence[str]] = None,
    prefix: str = "",
    cache: Optional[EnrichmentCache] = None,
) -> Enrichment:
    """Enrich events with ``view``'s features (all, or those named), joined by event field ``on``.

    ``view`` is a regular feature view with one join key, e.g. ``enrich(item, on="item_id",
    features=["description", "price"])``. A key with no value gives the element type's null default
    (as every null in a sequence list) and counts as an enrichment miss. ``cache`` (serving time
    only) keeps looked-up values in the serving process, e.g. ``EnrichmentCache(ttl_seconds=60,
    max_entries=100_000)``.
    """
    if is_sequence_view(view):
        raise SequenceDefinitionError(
            f"Enrichment from '{view.name}': sequence views cannot be joined to events; use a regular view."
        )
    keys = list(view.entity_columns)
    if len(keys) != 1:
        raise SequenceDefinitionError(
            f"Enrichment from '{view.name}': the view must have exactly one join key, declared in its "
            f"schema (e.g. Field(name='item_id', dtype=String)); found {[k.name for k in keys]}."
        )
    available = {f.name: f for f in view.features}
    names = list(features) if features is not None else list(available)
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise SequenceDefinitionError(
            f"Enrichment from '{view.name}': unknown or no feature(s) {unknown}; it has {sorted(available)}."
        )
    return Enrichment(
        view=view.name,
        join_key=keys[0].name,
        key_type=keys[0].dtype.to_value_type(),
        on=on,
        features=tuple((n, element_value_type(view.name, n, available[n].dtype)) for n in names),
        prefix=prefix,
        cache=cache,
    )
