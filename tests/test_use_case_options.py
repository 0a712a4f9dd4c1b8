"""Use case options (filter operators, output formats): enums in code, the same text in the registry.

Pure: no Redis, no Feast repository.
"""

from __future__ import annotations

import json
import operator

import numpy as np
import pytest
from feast import FeatureService
from feast.value_type import ValueType

from feast_sequence import (
    Operator,
    OutputFormat,
    SequenceDefinitionError,
    SequenceSpec,
    UseCaseSettings,
    Where,
)
from feast_sequence.definitions.settings import EventField, SequenceSettings
from feast_sequence.serving.batch import SequenceBatch, as_array
from feast_sequence.serving.filter import filter_events
from feast_sequence.serving.use_case import TAG_USE_CASE, use_case_settings, validate_use_case

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
VIEW = SequenceSettings(
    view_name="clicks",
    join_keys=(("user", ValueType.INT64),),
    fields=(EventField("kind", ValueType.STRING), EventField("n", ValueType.INT32)),
    timestamp_field="ts",
    max_length=10,
    dedup_by=(),
    ttl_us=None,
)


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
        Operator.EQ: operator.eq,
        Operator.NE: operator.ne,
        Operator.LT: operator.lt,
        Operator.LE: operator.le,
        Operator.GT: operator.gt,
        Operator.GE: operator.ge,
        Operator.IN: lambda v, allowed: v in allowed,
        Operator.NOT_IN: lambda v, allowed: v not in allowed,
    }[op]
    kept = filter_events(batch, [Where("n", op.value, operand)])
    assert kept.columns["n"].tolist() == [v for v in values if python(v, operand)]
