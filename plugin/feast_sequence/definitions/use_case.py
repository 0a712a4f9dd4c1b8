"""Use cases ("tenants"): one team's view of shared sequences, declared as a Feast ``FeatureService``.

A use case picks sequence views and fields, and per view a length (at most the view's
``max_length``), event filters, a time window and serving-time enrichments; it also picks the output
format and its own limits. Everything is stored in one reserved tag of the ``FeatureService``, so it
travels through ``feast apply`` and the registry like any Feast object and a running service picks
up a change at its next registry refresh. Sequences are stored once; each use case shapes them when
they are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

from feast import FeatureService, FeatureView
from feast.value_type import ValueType

from feast_sequence.definitions.element_types import ELEMENT_TYPES
from feast_sequence.definitions.enrichment import Enrichment
from feast_sequence.definitions.settings import (
    TAG_PREFIX,
    SequenceSettings,
    is_sequence_view,
    sequence_settings,
)
from feast_sequence.errors import SequenceDefinitionError

TAG_USE_CASE = TAG_PREFIX + "use_case"
USE_CASE_FORMAT = 1


class Operator(str, Enum):
    """A comparison of ``Where``; its value is the text users write and the registry stores."""

    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "in"  # "in"/"not in" take a list of values
    NOT_IN = "not in"

    @property
    def takes_list(self) -> bool:
        return self in (Operator.IN, Operator.NOT_IN)


class OutputFormat(str, Enum):
    """A use case's ``output`` (see ``serving/featurize.py``); its value is what the registry stores."""

    LISTS = "lists"
    PADDED = "padded"
    JAGGED = "jagged"


class Order(str, Enum):
    """A sequence's ``order``: ``newest_first`` (as stored, Fennel's ``LastK``) or ``oldest_first``
    (time order: SASRec, HSTU, Tecton's ``last_distinct``)."""

    NEWEST_FIRST = "newest_first"
    OLDEST_FIRST = "oldest_first"


class Padding(str, Enum):
    """Where ``padded`` output puts its padding: ``right`` (after the events) or ``left`` (before
    them: with ``oldest_first``, the newest event in the last slot, as SASRec takes it)."""

    RIGHT = "right"
    LEFT = "left"


#: What users may write for an operator or an output format (the enums' values): for type checkers.
OperatorText = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
OutputFormatText = Literal["lists", "padded", "jagged"]
OrderText = Literal["newest_first", "oldest_first"]
PaddingText = Literal["right", "left"]

OPERATORS: Tuple[str, ...] = tuple(op.value for op in Operator)
OUTPUT_FORMATS: Tuple[str, ...] = tuple(f.value for f in OutputFormat)
ORDERS: Tuple[str, ...] = tuple(o.value for o in Order)
PADDINGS: Tuple[str, ...] = tuple(p.value for p in Padding)


@dataclass(frozen=True)
class FromRequest:
    """A filter value taken from each entity row of the request (a column beside the entity keys),
    not from the definition: ``Where("category", "==", FromRequest("candidate_category"))`` keeps,
    for each row, the events of that row's candidate's category (docs/concepts.md, "Candidates")."""

    column: str

    def to_json(self) -> Dict[str, str]:
        return {"from_request": self.column}


@dataclass(frozen=True)
class Where:
    """Keep only events whose ``field`` satisfies ``op value``, e.g. ``Where("quantity", ">", 0)``
    or ``Where("event_type", "in", ["click", "buy"])``; ``value`` may be a :class:`FromRequest`
    (with ``==`` or ``in``): each entity row then gives its own value."""

    field: str
    op: Union[Operator, OperatorText]
    value: Any

    def __post_init__(self) -> None:
        # Known text becomes its Operator; unknown text is kept for validate_use_case to refuse,
        # naming the use case and the field.
        if isinstance(self.op, str) and self.op in OPERATORS:
            object.__setattr__(self, "op", Operator(self.op))

    @property
    def from_request(self) -> Optional[str]:
        """The request column this condition's value comes from, or None (a fixed value)."""
        return self.value.column if isinstance(self.value, FromRequest) else None

    def to_json(self) -> List[Any]:
        if isinstance(self.value, FromRequest):
            return [self.field, _text(self.op), self.value.to_json()]
        takes_list = isinstance(self.op, Operator) and self.op.takes_list
        return [self.field, _text(self.op), list(self.value) if takes_list else self.value]

    @classmethod
    def from_json(cls, raw: Sequence[Any]) -> "Where":
        field_name, op, value = raw
        if isinstance(value, dict) and "from_request" in value:
            value = FromRequest(value["from_request"])
        return cls(field_name, op, value)


@dataclass(frozen=True)
class SequenceSpec:
    """How one use case shapes one sequence view. Defaults: the whole stored sequence, unfiltered,
    newest first, padded on the right (with ``output="padded"``), no age feature.

    ``age_field`` names a derived INT64 per-event feature: whole seconds from each event to the
    request (online: the request's time; training: the row's timestamp).
    """

    length: Optional[int] = None
    where: Tuple[Where, ...] = ()
    window: Optional[timedelta] = None
    enrich: Tuple[Enrichment, ...] = ()
    order: Union[Order, OrderText] = Order.NEWEST_FIRST
    padding: Union[Padding, PaddingText] = Padding.RIGHT
    age_field: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "where", tuple(self.where))
        object.__setattr__(self, "enrich", tuple(self.enrich))
        # As for Where.op: unknown text is refused by validate_use_case, naming the use case.
        if isinstance(self.order, str) and self.order in ORDERS:
            object.__setattr__(self, "order", Order(self.order))
        if isinstance(self.padding, str) and self.padding in PADDINGS:
            object.__setattr__(self, "padding", Padding(self.padding))

    @property
    def oldest_first(self) -> bool:
        return self.order == Order.OLDEST_FIRST

    @property
    def left_padded(self) -> bool:
        return self.padding == Padding.LEFT

    @property
    def request_conditions(self) -> Tuple[Where, ...]:
        """The filters whose value each entity row gives (``FromRequest``)."""
        return tuple(c for c in self.where if c.from_request is not None)

    @property
    def fixed_conditions(self) -> Tuple[Where, ...]:
        return tuple(c for c in self.where if c.from_request is None)

    @property
    def window_us(self) -> Optional[int]:
        return None if self.window is None else int(self.window / timedelta(microseconds=1))

    def to_json(self) -> Dict[str, Any]:
        raw: Dict[str, Any] = {
            "length": self.length,
            "where": [w.to_json() for w in self.where],
            "window_us": self.window_us,
            "enrich": [e.to_json() for e in self.enrich],
        }
        # Options at their defaults are left out, so tags written before they existed stay the same.
        if self.order != Order.NEWEST_FIRST:
            raw["order"] = _text(self.order)
        if self.padding != Padding.RIGHT:
            raw["padding"] = _text(self.padding)
        if self.age_field is not None:
            raw["age_field"] = self.age_field
        return raw

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "SequenceSpec":
        window = raw.get("window_us")
        return cls(
            length=raw.get("length"),
            where=tuple(Where.from_json(w) for w in raw.get("where", [])),
            window=None if window is None else timedelta(microseconds=window),
            enrich=tuple(Enrichment.from_json(e) for e in raw.get("enrich", [])),
            order=raw.get("order", Order.NEWEST_FIRST.value),
            padding=raw.get("padding", Padding.RIGHT.value),
            age_field=raw.get("age_field"),
        )


@dataclass(frozen=True)
class Limits:
    """Per-use-case isolation limits; a request over a limit fails with ``SequenceRequestError``."""

    max_entities: Optional[int] = None
    """Entity rows one request may ask for."""
    time_budget_ms: Optional[float] = None
    """Wall time one request may take; checked after each serving stage."""

    def to_json(self) -> Dict[str, Any]:
        return {"max_entities": self.max_entities, "time_budget_ms": self.time_budget_ms}


@dataclass(frozen=True)
class UseCaseSettings:
    """A use case as served: recovered from a ``FeatureService`` by :func:`use_case_settings`."""

    name: str
    sequences: Mapping[str, SequenceSpec]  # by view name; views not named use SequenceSpec()
    output: Union[OutputFormat, OutputFormatText] = OutputFormat.LISTS
    limits: Limits = field(default_factory=Limits)
    fail_closed: bool = False
    """A stored sequence found corrupt fails the whole request (``CorruptSequenceError``, 500)
    instead of being served without events beside the other entities (docs/reliability.md)."""

    def __post_init__(self) -> None:
        # As for Where.op: unknown text is refused by validate_use_case, naming the use case.
        if isinstance(self.output, str) and self.output in OUTPUT_FORMATS:
            object.__setattr__(self, "output", OutputFormat(self.output))

    def spec(self, view_name: str) -> SequenceSpec:
        return self.sequences.get(view_name) or SequenceSpec()

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": USE_CASE_FORMAT,
                "output": _text(self.output),
                "limits": self.limits.to_json(),
                **({"fail_closed": True} if self.fail_closed else {}),
                "sequences": {name: spec.to_json() for name, spec in sorted(self.sequences.items())},
            },
            sort_keys=True,
        )


class SequenceUseCase(FeatureService):
    """A ``FeatureService`` that also says how each sequence view is shaped for this use case.

    Example::

        ranking = SequenceUseCase(
            name="ranking",
            features=[customer_purchases[["item_id", "quantity"]], purchase_summary],
            sequences={
                "customer_purchases": SequenceSpec(
                    length=20,
                    where=[Where("quantity", ">", 0)],
                    window=timedelta(days=365),
                    enrich=[enrich(item, on="item_id", features=["description", "price"])],
                )
            },
            output="padded",
            limits=Limits(max_entities=100, time_budget_ms=50),
        )

    ``fail_closed=True``: a corrupt stored sequence fails the request instead of being served
    without events (see ``UseCaseSettings.fail_closed``).

    Serve it with ``store.get_online_features(features=store.get_feature_service("ranking"), ...)``
    (or ``feast serve``'s ``feature_service``); train with ``store.get_historical_features(features=
    ..., entity_df=...)``: both apply the same shaping.
    """

    def __init__(
        self,
        *,
        name: str,
        features: List[Any],
        sequences: Optional[Mapping[str, SequenceSpec]] = None,
        output: Union[OutputFormat, OutputFormatText] = OutputFormat.LISTS,
        limits: Optional[Limits] = None,
        fail_closed: bool = False,
        tags: Optional[Dict[str, str]] = None,
        description: str = "",
        owner: str = "",
        **kwargs: Any,
    ):
        user_tags = dict(tags or {})
        if TAG_USE_CASE in user_tags:
            raise SequenceDefinitionError(f"Use case '{name}': tag {TAG_USE_CASE!r} is reserved.")
        views = {f.projection.name_to_use(): f for f in features if isinstance(f, FeatureView) and is_sequence_view(f)}
        settings = UseCaseSettings(name, dict(sequences or {}), output, limits or Limits(), fail_closed)
        validate_use_case(settings, {n: sequence_settings(v) for n, v in views.items()})
        super().__init__(
            name=name,
            features=features,
            tags={**user_tags, TAG_USE_CASE: settings.to_json()},
            description=description,
            owner=owner,
            **kwargs,
        )


def _text(choice: Union[Operator, OutputFormat, Order, Padding, str]) -> str:
    """The stored (and shown) text of an option: the enum's value, or unknown text as given."""
    return choice.value if isinstance(choice, Enum) else choice


def is_use_case(service: Any) -> bool:
    return isinstance(service, FeatureService) and TAG_USE_CASE in (service.tags or {})


def use_case_settings(service: FeatureService) -> UseCaseSettings:
    """The use case carried by a ``FeatureService`` (fresh or rebuilt from the registry)."""
    raw_text = (service.tags or {}).get(TAG_USE_CASE)
    if raw_text is None:
        raise SequenceDefinitionError(f"Feature service '{service.name}' is not a sequence use case.")
    try:
        raw = json.loads(raw_text)
        if raw.get("format") != USE_CASE_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {USE_CASE_FORMAT}")
        return UseCaseSettings(
            name=service.name,
            sequences={n: SequenceSpec.from_json(s) for n, s in raw["sequences"].items()},
            output=raw["output"],
            limits=Limits(**raw["limits"]),
            fail_closed=bool(raw.get("fail_closed", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SequenceDefinitionError(f"Use case '{service.name}': tag {TAG_USE_CASE!r} is corrupt: {exc}") from exc


def validate_use_case(use_case: UseCaseSettings, views: Mapping[str, SequenceSettings]) -> None:
    """Check a use case against the sequence views it reads; errors name the use case and the field.

    Run when the use case is defined (``feast apply`` imports it) and again when it is served,
    against the views then in the registry.
    """
    where = f"Use case '{use_case.name}'"
    if not isinstance(use_case.output, OutputFormat):
        raise SequenceDefinitionError(
            f"{where}: output={use_case.output!r} is unknown; use one of {list(OUTPUT_FORMATS)}."
        )
    for limit, value in use_case.limits.to_json().items():
        if value is not None and (isinstance(value, bool) or not value > 0):
            raise SequenceDefinitionError(f"{where}: limit {limit}={value!r} must be positive.")
    unknown = sorted(set(use_case.sequences) - set(views))
    if unknown:
        raise SequenceDefinitionError(
            f"{where}: sequences {unknown} are not sequence views of this use case (it reads {sorted(views)})."
        )
    for view_name, settings in views.items():
        spec = use_case.spec(view_name)
        at = f"{where}, view '{view_name}'"
        if spec.length is not None and (
            isinstance(spec.length, bool)
            or not isinstance(spec.length, int)
            or not 1 <= spec.length <= settings.max_length
        ):
            raise SequenceDefinitionError(
                f"{at}: length={spec.length!r} is not allowed; use 1 to the view's max_length={settings.max_length}."
            )
        if spec.window is not None and spec.window <= timedelta(0):
            raise SequenceDefinitionError(f"{at}: window={spec.window} must be positive.")
        _validate_shape(at, spec, use_case.output)
        types = {f.name: f.value_type for f in settings.fields}
        for condition in spec.where:
            _validate_where(at, condition, types)
        if len(spec.request_conditions) > 1:
            raise SequenceDefinitionError(
                f"{at}: {len(spec.request_conditions)} filters take their value from the request; "
                "at most one may (the others can use fixed values)."
            )
        outputs = set(settings.served_names)
        for enrichment in spec.enrich:
            if enrichment.on not in types:
                raise SequenceDefinitionError(
                    f"{at}: enrichment from '{enrichment.view}' joins on unknown event field "
                    f"{enrichment.on!r}; fields: {sorted(types)}."
                )
            if types[enrichment.on] != enrichment.key_type:
                raise SequenceDefinitionError(
                    f"{at}: enrichment joins event field {enrichment.on!r} "
                    f"({types[enrichment.on].name}) to '{enrichment.view}' key "
                    f"{enrichment.join_key!r} ({enrichment.key_type.name}); the types must match."
                )
            if enrichment in settings.enrichments:
                continue  # computed at index time: served from the stored events
            for output in enrichment.output_names:
                if output in outputs:
                    raise SequenceDefinitionError(
                        f"{at}: enriched field {output!r} collides with another field; set a prefix "
                        "(or, if the view stores it, declare the same enrichment on the view)."
                    )
                outputs.add(output)
        if spec.age_field is not None:
            if spec.age_field in outputs or spec.age_field in {n for e in spec.enrich for n in e.output_names}:
                raise SequenceDefinitionError(
                    f"{at}: age_field={spec.age_field!r} collides with another field; choose another name."
                )


def _validate_shape(at: str, spec: SequenceSpec, output: Union[OutputFormat, str]) -> None:
    if not isinstance(spec.order, Order):
        raise SequenceDefinitionError(f"{at}: order={spec.order!r} is unknown; use one of {list(ORDERS)}.")
    if not isinstance(spec.padding, Padding):
        raise SequenceDefinitionError(f"{at}: padding={spec.padding!r} is unknown; use one of {list(PADDINGS)}.")
    if spec.padding == Padding.LEFT and output != OutputFormat.PADDED:
        raise SequenceDefinitionError(
            f"{at}: padding='left' only applies to output='padded' (this use case's output is "
            f"{_text(output)!r}); remove it or use output='padded'."
        )
    if spec.age_field is not None and (not isinstance(spec.age_field, str) or not spec.age_field.isidentifier()):
        raise SequenceDefinitionError(
            f"{at}: age_field={spec.age_field!r} must be a field name (letters, digits, underscores)."
        )


def _validate_where(at: str, condition: Where, types: Mapping[str, ValueType]) -> None:
    if condition.field not in types:
        raise SequenceDefinitionError(
            f"{at}: filter on unknown event field {condition.field!r}; fields: {sorted(types)}."
        )
    if not isinstance(condition.op, Operator):
        raise SequenceDefinitionError(
            f"{at}: filter {condition.field!r} has unknown operator {condition.op!r}; use one of {list(OPERATORS)}."
        )
    value_type = types[condition.field]
    op = condition.op.value
    if isinstance(condition.value, FromRequest):
        column = condition.value.column
        if not isinstance(column, str) or not column:
            raise SequenceDefinitionError(
                f"{at}: filter {condition.field!r} {op!r} takes its value from request column {column!r}; "
                "name the column with a non-empty string."
            )
        if condition.op not in (Operator.EQ, Operator.IN):
            raise SequenceDefinitionError(
                f"{at}: filter {condition.field!r} {op!r} FromRequest({column!r}): request values take "
                "only '==' (one value per row) or 'in' (a list per row)."
            )
        return
    values: Union[List[Any], Tuple[Any, ...]] = [condition.value]
    if condition.op.takes_list:
        if isinstance(condition.value, (str, bytes)) or not hasattr(condition.value, "__iter__"):
            raise SequenceDefinitionError(
                f"{at}: filter {condition.field!r} {op!r} needs a list of values, got {condition.value!r}."
            )
        values = list(condition.value)
    elif condition.op not in (Operator.EQ, Operator.NE) and not ELEMENT_TYPES[value_type].ordered:
        raise SequenceDefinitionError(
            f"{at}: filter {condition.field!r} {op!r}: {value_type.name} fields only support ==, !=, in and not in."
        )
    allowed = ELEMENT_TYPES[value_type].filter_types
    for value in values:
        if isinstance(value, bool) != (bool in allowed) or not isinstance(value, allowed):
            raise SequenceDefinitionError(
                f"{at}: filter {condition.field!r} {op!r} compares a {value_type.name} field with {value!r}."
            )
