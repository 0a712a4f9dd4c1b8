"""Checking the join key values of an online request against the sequence views it reads: pure logic.

Feast converts request keys with a lenient cast (``1.5``, ``True`` and ``"1"`` all become the int64
key 1), so a key of the wrong type would silently read another entity's sequence. Pushes refuse such
keys (``storage/entity_keys.entity_column_bytes``); reads refuse them too. The check looks at the set of Python
types of each key column, so a well-typed request costs one pass of ``type`` over each column.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from feast_sequence.definitions.element_types import KEY_TYPES
from feast_sequence.definitions.settings import SequenceSettings, is_sequence_view, sequence_settings
from feast_sequence.errors import SequenceInputError, SequenceRequestError

#: Per join key type: the Python types a request may give, and their name in messages.
_EXPECTED: Dict[ValueType, Tuple[Tuple[type, ...], str]] = {
    t: (e.key_types, e.key_types[0].__name__) for t, e in KEY_TYPES.items()
}
_BOUNDS = {t: e.int_range for t, e in KEY_TYPES.items() if e.int_range is not None}

#: Request column -> (join key type, sequence view name).
KeyColumns = Dict[str, Tuple[ValueType, str]]


def sequence_key_columns(
    tables: Iterable[Any],
    entity_name_to_join_key: Mapping[str, str],
    settings_of: Callable[[Any], SequenceSettings] = sequence_settings,
) -> KeyColumns:
    """The request columns holding a sequence view's join key: by join key (as the view's projection
    renames it), and by entity name (Feast's deprecated spelling)."""
    columns: KeyColumns = {}
    for table in tables:
        if not is_sequence_view(table):
            continue
        renamed = table.projection.join_key_map or {}
        for name, value_type in settings_of(table).join_keys:
            if value_type not in _EXPECTED:
                continue  # an unsupported key type is refused when the key is encoded
            columns.setdefault(renamed.get(name, name), (value_type, table.name))
    for entity_name, join_key in entity_name_to_join_key.items():
        if join_key in columns:
            columns.setdefault(entity_name, columns[join_key])
    return columns


def check_request_shape(features: Any, entity_rows: Any) -> None:
    """Refuse (422) an online request with no features, no entity rows, or entity rows that do not
    line up, naming the problem: Feast answers each with a bare IndexError, KeyError or ValueError
    (HTTP 500), and an empty entity column with a message about missing join keys."""
    if isinstance(features, (list, tuple)) and not features:
        raise _bad_request("No features requested: 'features' is empty; name at least one as 'view:feature'.")
    if isinstance(entity_rows, (list, tuple)):
        if not entity_rows:
            raise _bad_request("No entity rows: 'entity_rows' is empty; give at least one row of join key values.")
        first = set(entity_rows[0])
        for position, row in enumerate(entity_rows):
            if set(row) != first:
                raise _bad_request(
                    f"Entity row {position} has keys {sorted(row)}, but row 0 has {sorted(first)}: every "
                    "entity row must give the same join keys."
                )
        return
    if not isinstance(entity_rows, Mapping) or not entity_rows:
        return  # no columns at all: Feast names the join keys that are missing
    lengths = {name: len(values) for name, values in entity_rows.items() if hasattr(values, "__len__")}
    if len(set(lengths.values())) > 1:
        raise _bad_request(
            f"Entity columns have different lengths ({', '.join(f'{k}: {n}' for k, n in lengths.items())}): "
            "each entity column must hold one value per entity row."
        )
    if lengths and not any(lengths.values()):
        raise _bad_request(
            f"No entity rows: the entity columns {sorted(lengths)} are empty; give at least one value each."
        )


def _bad_request(message: str) -> SequenceRequestError:
    return SequenceRequestError(message, http_status=422)


def check_entity_rows(columns: KeyColumns, entity_rows: Any) -> None:
    """Raise ``SequenceInputError`` for the first key value whose type its join key does not take.

    ``entity_rows`` is what ``get_online_features`` was given: a list of dicts or a dict of columns.
    Columns given as Feast ``ValueProto``s are typed already and left to Feast.
    """
    for column, (value_type, view) in columns.items():
        values = _column(entity_rows, column)
        if values is not None:
            _check_column(column, value_type, view, values)


def _column(entity_rows: Any, column: str) -> Optional[Sequence[Any]]:
    if isinstance(entity_rows, list):
        if not entity_rows or column not in entity_rows[0]:
            return None  # Feast reports missing keys itself
        return [row.get(column) for row in entity_rows]
    values = entity_rows.get(column)
    if values is None or hasattr(values, "val"):  # absent, or a RepeatedValue of ValueProtos
        return None
    return values if isinstance(values, (list, tuple)) else list(values)


def _check_column(column: str, value_type: ValueType, view: str, values: Sequence[Any]) -> None:
    accepted, expected = _EXPECTED[value_type]
    kinds = set(map(type, values))
    if ValueProto in kinds:
        return
    wrong = {k for k in kinds if not issubclass(k, accepted) or issubclass(k, (bool, np.bool_))}
    if wrong:
        position = next(i for i, v in enumerate(values) if type(v) in wrong)
        value = values[position]
        problem = "a join key cannot be null" if value is None else "Feast would read it as another entity"
        # `feast get-online-features` passes every key as text: name the command that does not.
        command = " (from the command line: feast-sequence get-online-features)" if isinstance(value, str) else ""
        raise _bad_key(
            column,
            view,
            position,
            value,
            f"{problem}. The key is {value_type.name} and expects {expected} values: convert it to "
            f"{expected} before the request{command}",
        )
    if value_type in _BOUNDS and values:
        low, high = _BOUNDS[value_type]
        if min(values) < low or max(values) > high:
            position = next(i for i, v in enumerate(values) if not low <= v <= high)
            raise _bad_key(
                column,
                view,
                position,
                values[position],
                f"outside the {value_type.name} range {low} .. {high}; the key expects {expected} values in that range",
            )


def _bad_key(column: str, view: str, position: int, value: Any, problem: str) -> SequenceInputError:
    shown = value.item() if isinstance(value, np.generic) else value
    return SequenceInputError(
        f"Join key {column!r} of sequence view {view!r}: entity row {position} has {shown!r} "
        f"({type(value).__name__}), {problem}."
    )
