"""Use case options (filter operators, output formats): enums in code, the same text in the registry.

Pure: no Redis, no Feast repository.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from feast import FeatureService
from feast.value_type import ValueType

from feast_sequence import (
    Operator,
    Order,
    OutputFormat,
    Padding,
    SequenceDefinitionError,
    SequenceSpec,
    UseCaseSettings,
    Where,
)
from feast_sequence.definitions.use_case import TAG_USE_CASE, use_case_settings, validate_use_case
from feast_sequence.serving.arrange import oldest_first, with_age
from feast_sequence.serving.batch import SequenceBatch, as_array
from feast_sequence.serving.featurize import mask, pad
from feast_sequence.serving.filter import filter_events

from repos import click_settings

#: A tag as registries written before the enums hold it: it must keep loading, and be written alike.
STORED = json.dumps(
    {
        "format": 1,
        "limits": {"max_entities": 10, "time_budget_ms": None},
        "output": "padded",
        "sequences": {
            "clicks": {
                "enrich": [],
                "length": 5,
                "where": [["kind", "not in", ["x", "y"]], ["n", ">=", 1]],
                "window_us": None,
            }
        },
    },
    sort_keys=True,
)
VIEW = click_settings()


def test_stored_text_loads_as_enums_and_is_written_back_unchanged():
    service = FeatureService(name="ranking", features=[], tags={TAG_USE_CASE: STORED})
    use_case = use_case_settings(service)
    assert use_case.output is OutputFormat.PADDED
    where = use_case.spec("clicks").where
    assert [w.op for w in where] == [Operator.NOT_IN, Operator.GE]
    assert use_case.to_json() == STORED


def test_text_and_enum_spellings_are_the_same_option():
    assert Where("n", ">", 0) == Where("n", Operator.GT, 0)
    assert UseCaseSettings("u", {}, "jagged") == UseCaseSettings("u", {}, OutputFormat.JAGGED)
    assert [o.value for o in Operator] == ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
    assert [f.value for f in OutputFormat] == ["lists", "padded", "jagged"]


def test_unknown_options_are_refused_naming_the_use_case_field_and_choices():
    with pytest.raises(
        SequenceDefinitionError,
        match=r"^Use case 'u': output='tensor' is unknown; use one of \['lists', 'padded', 'jagged'\]\.$",
    ):
        validate_use_case(UseCaseSettings("u", {}, "tensor"), {})  # type: ignore[arg-type]
    bad = UseCaseSettings("u", {"clicks": SequenceSpec(where=[Where("n", "=>", 1)])})  # type: ignore[arg-type]
    with pytest.raises(
        SequenceDefinitionError,
        match=r"Use case 'u', view 'clicks': filter 'n' has unknown operator '=>'; "
        r"use one of \['==', '!=', '<', '<=', '>', '>=', 'in', 'not in'\]\.",
    ):
        validate_use_case(bad, {"clicks": VIEW})
    ordered_string = UseCaseSettings("u", {"clicks": SequenceSpec(where=[Where("kind", "<", "b")])})
    with pytest.raises(SequenceDefinitionError, match=r"filter 'kind' '<': STRING fields only support"):
        validate_use_case(ordered_string, {"clicks": VIEW})


@pytest.mark.parametrize("op", list(Operator), ids=lambda o: o.value)
def test_every_operator_filters_as_python_compares(op):
    values = [3, -1, 0, 7, 3]
    batch = SequenceBatch(np.array([2, 3]), {"n": as_array(values, ValueType.INT32)}, {"n": ValueType.INT32})
    operand = [0, 3] if op.takes_list else 3
    python = {
        Operator.EQ: lambda v, x: v == x,
        Operator.NE: lambda v, x: v != x,
        Operator.LT: lambda v, x: v < x,
        Operator.LE: lambda v, x: v <= x,
        Operator.GT: lambda v, x: v > x,
        Operator.GE: lambda v, x: v >= x,
        Operator.IN: lambda v, x: v in x,
        Operator.NOT_IN: lambda v, x: v not in x,
    }[op]
    kept = filter_events(batch, [Where("n", op.value, operand)])
    assert kept.columns["n"].tolist() == [v for v in values if python(v, operand)]


def test_order_and_shape_options_round_trip_through_the_tag_and_default_to_todays_text():
    spec = SequenceSpec(length=5, order="oldest_first", padding="left", age_field="age_s")
    assert (spec.order, spec.padding) == (Order.OLDEST_FIRST, Padding.LEFT)
    use_case = UseCaseSettings("u", {"clicks": spec}, "padded")
    validate_use_case(use_case, {"clicks": VIEW})
    service = FeatureService(name="u", features=[], tags={TAG_USE_CASE: use_case.to_json()})
    assert use_case_settings(service).spec("clicks") == spec
    assert "order" not in SequenceSpec().to_json() and "age_field" not in SequenceSpec().to_json()


@pytest.mark.parametrize(
    "spec, output, message",
    [
        (
            SequenceSpec(order="newest"),
            "padded",
            r"order='newest' is unknown; use one of \['newest_first', 'oldest_first'\]",
        ),
        (SequenceSpec(padding="middle"), "padded", r"padding='middle' is unknown; use one of \['right', 'left'\]"),
        (SequenceSpec(padding="left"), "jagged", r"padding='left' only applies to output='padded'.*'jagged'"),
        (SequenceSpec(age_field="kind"), "lists", r"age_field='kind' collides with another field"),
        (SequenceSpec(age_field="age s"), "lists", r"age_field='age s' must be a field name"),
    ],
)
def test_bad_order_and_shape_options_are_refused_naming_the_view(spec, output, message):
    with pytest.raises(SequenceDefinitionError, match=r"Use case 'u', view 'clicks': " + message):
        validate_use_case(UseCaseSettings("u", {"clicks": spec}, output), {"clicks": VIEW})


def test_oldest_first_reverses_each_row_and_ages_count_from_each_rows_request():
    ts = as_array([50, 40, 30, 95, 90, 80], ValueType.INT64)
    batch = SequenceBatch(np.array([3, 0, 3]), {"ts": ts}, {"ts": ValueType.INT64})
    aged = with_age(batch, "age", batch.columns["ts"], np.array([100, 7, 90]))
    assert aged.columns["age"].tolist() == [50, 60, 70, -5, 0, 10]  # an event after its request: negative
    arranged = oldest_first(aged)
    assert arranged.columns["ts"].tolist() == [30, 40, 50, 80, 90, 95]
    assert arranged.columns["age"].tolist() == [70, 60, 50, 10, 0, -5]
    assert arranged.lengths.tolist() == [3, 0, 3]


def test_left_padding_puts_the_newest_of_an_oldest_first_row_in_the_last_slot():
    """SASRec's convention with numpy only: rows oldest to newest, padded with 0 on the left."""
    items = as_array([13, 12, 11, 22, 21], ValueType.INT64)  # stored newest first: row 0 = 13, 12, 11
    batch = oldest_first(SequenceBatch(np.array([3, 2, 0]), {"item": items}, {"item": ValueType.INT64}))
    padded = np.array([pad(row, 4, 0, left=True) for row in batch.row_lists("item")])
    masks = np.array([mask(int(n), 4, left=True) for n in batch.lengths])
    assert padded.tolist() == [[0, 11, 12, 13], [0, 0, 21, 22], [0, 0, 0, 0]]
    assert (padded[masks.any(axis=1), -1] == [13, 22]).all() and (padded[~masks] == 0).all()
