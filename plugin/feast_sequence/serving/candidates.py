"""Candidate rows: a filter whose value each entity row gives (``Where(..., FromRequest(column))``).

A ranking request asks, for one user, about many candidates: one entity row per candidate, all with
the same entity key and each with its candidate's value (a category, a list of categories). Each row
gets the newest ``length`` events of its entity whose field matches its value, so rows of one entity
share one read and one decode, and the events are grouped by the field's value once per request
(a stable sort of (row, value code)): each row then takes its group's first events, without a pass
over the history per row. Training (serving/training.py) runs the same selection per training row,
so both answer alike by construction.

A bad request value (a missing column, a value of the wrong type) refuses the whole request before
anything is read, naming the row: as Feast refuses request data, and so no row is served from a
partly valid request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import pandas as pd
from feast.value_type import ValueType

from feast_sequence.definitions.element_types import ELEMENT_TYPES
from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.definitions.use_case import Operator, UseCaseSettings, Where
from feast_sequence.errors import SequenceRequestError
from feast_sequence.serving.batch import SequenceBatch
from feast_sequence.serving.views import ServedView


@dataclass(frozen=True)
class RequestColumn:
    """A request column a use case's filter reads: which view and field, and what it takes."""

    column: str
    view: str
    condition: Where
    value_type: ValueType

    @property
    def takes_list(self) -> bool:
        return Operator(self.condition.op).takes_list


def request_columns(use_case: UseCaseSettings, views: Mapping[str, SequenceSettings]) -> List[RequestColumn]:
    """Every request column of a use case's filters, over the sequence views it reads."""
    found = []
    for name, settings in views.items():
        types = {f.name: f.value_type for f in settings.fields}
        for condition in use_case.spec(name).request_conditions:
            column = condition.from_request
            if column is not None and condition.field in types:  # else validate_use_case refuses it
                found.append(RequestColumn(column, name, condition, types[condition.field]))
    return found


def request_column_names(use_case: UseCaseSettings) -> Set[str]:
    """The request columns a use case's filters read: not entity keys, so not Feast's to resolve."""
    return {str(c.from_request) for spec in use_case.sequences.values() for c in spec.request_conditions}


def check_request_values(
    use_case: str,
    columns: Sequence[RequestColumn],
    rows: Mapping[str, Sequence[Any]],
    error: Callable[[str], Exception] = lambda message: SequenceRequestError(message, http_status=422),
) -> Dict[str, List[Any]]:
    """Each request column's values as Python values, checked against its field's type; raises
    ``error`` (a 422 by default) for a missing column or the first bad value, naming the row."""
    checked: Dict[str, List[Any]] = {}
    for request in columns:
        where = (
            f"Use case '{use_case}', view '{request.view}': filter {request.condition.field!r} "
            f"{Operator(request.condition.op).value!r} takes its value from request column {request.column!r}"
        )
        if request.column not in rows:
            raise error(f"{where}, which the entity rows lack; give it in every row (columns: {sorted(rows)}).")
        values = rows[request.column]
        values = values.tolist() if isinstance(values, np.ndarray) else list(values)
        exact = set(ELEMENT_TYPES[request.value_type].filter_types)  # bool is no int here: type() is exact
        if not request.takes_list and all(type(value) in exact for value in values):
            checked[request.column] = values  # the common case, without a call per value
        else:
            checked[request.column] = [_checked(where, request, row, v, error) for row, v in enumerate(values)]
    return checked


def _checked(where: str, request: RequestColumn, row: int, value: Any, error: Callable[[str], Exception]) -> Any:
    allowed = ELEMENT_TYPES[request.value_type].filter_types
    expected = f"{request.value_type.name} value{'s' if request.takes_list else ''}"

    def one(item: Any) -> Any:
        item = item.item() if isinstance(item, np.generic) else item
        if isinstance(item, bool) != (bool in allowed) or not isinstance(item, allowed):
            raise error(
                f"{where}; row {row} has {value!r}, expected {'a list of ' if request.takes_list else 'a '}{expected}."
            )
        return item

    if not request.takes_list:
        return one(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise error(f"{where} ('in'); row {row} has {value!r}, expected a list of {expected}.")
    return [one(item) for item in value]


def select_per_row(
    batch: SequenceBatch,
    condition: Where,
    owner: np.ndarray,
    values: Sequence[Any],
    length: Optional[int],
) -> SequenceBatch:
    """One row per entry of ``owner``: the first ``length`` events (newest first, as stored) of batch
    row ``owner[i]`` whose ``condition.field`` equals ``values[i]`` (``in``: is one of the list
    ``values[i]``). ``length`` None: every matching event."""
    rows = len(owner)
    owner = np.asarray(owner, dtype=np.int64)
    codes, uniques = pd.factorize(batch.columns[condition.field])  # -1: a NaN, equal to nothing
    stride = len(uniques) + 1
    code_of = {value: code + 1 for code, value in enumerate(uniques.tolist())}  # 0: NaN, never asked for
    # The grouping, once: events by (row, value code), each group newest first (a stable sort). Keys
    # in the smallest unsigned type that holds them: numpy radix-sorts 16-bit keys, ~10x faster.
    key_type = np.uint16 if batch.rows * stride <= np.iinfo(np.uint16).max else np.int64
    keys = (batch.row_of_event() * stride + codes + 1).astype(key_type)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]

    takes_list = Operator(condition.op).takes_list
    pair_row, pair_code = _pairs(values, code_of, takes_list)
    pair_key = (owner[pair_row] * stride + pair_code).astype(key_type)
    start = np.searchsorted(sorted_keys, pair_key, "left")
    count = np.searchsorted(sorted_keys, pair_key, "right") - start
    if length is not None:
        count = np.minimum(count, length)  # a row's newest `length` are among each group's newest
    total = int(count.sum())
    pair_of = np.repeat(np.arange(len(pair_key)), count)
    within = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    picked = order[start[pair_of] + within]
    picked_row = pair_row[pair_of]
    if takes_list:  # a row's groups merged back into its stored order, then cut to its length
        merged = np.lexsort((picked, picked_row))
        picked, picked_row = picked[merged], picked_row[merged]
        if length is not None and total:
            first = np.searchsorted(picked_row, picked_row, "left")
            kept = np.arange(total) - first < length
            picked, picked_row = picked[kept], picked_row[kept]
    lengths = np.bincount(picked_row, minlength=rows).astype(np.int64)
    return SequenceBatch(lengths, {n: c[picked] for n, c in batch.columns.items()}, dict(batch.types))


def _pairs(values: Sequence[Any], code_of: Dict[Any, int], takes_list: bool) -> Tuple[np.ndarray, np.ndarray]:
    """(row, value code) of every value asked for that occurs in the events (codes from 1), rows ascending."""
    if not takes_list:
        codes = np.fromiter((code_of.get(v, 0) for v in values), dtype=np.int64, count=len(values))
        present = np.flatnonzero(codes > 0)
        return present, codes[present]
    rows: List[int] = []
    codes_list: List[int] = []
    for row, wanted in enumerate(values):
        found = dict.fromkeys(c for c in (code_of.get(v, 0) for v in wanted) if c > 0)
        rows.extend([row] * len(found))
        codes_list.extend(found)
    return np.asarray(rows, dtype=np.int64), np.asarray(codes_list, dtype=np.int64)


def serve_per_row(view: ServedView, values: Mapping[str, Sequence[Any]]) -> ServedView:
    """A served view with a request filter, turned from one row per entity into one row per request
    row: each row's own matching events, sized; its plan maps request row i to batch row i."""
    plan = view.plan
    (condition,) = plan.spec.request_conditions
    owner = np.asarray(plan.owner(), dtype=np.int64)
    batch = select_per_row(view.batch, condition, owner, values[str(condition.from_request)], plan.spec.length)
    per_row = replace(plan, idxs=tuple([row] for row in range(plan.output_len)))
    return ServedView(per_row, batch)
