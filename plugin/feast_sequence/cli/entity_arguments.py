"""Entity keys typed on the command line (``customer_id=13085``) as entity rows whose values have
their join keys' declared types: the store never casts a key of the wrong type
(``online/entity_rows.py``), so text must become an int, a float, a bool or bytes here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence

if TYPE_CHECKING:
    from feast.value_type import ValueType

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _bool(text: str) -> bool:
    if text.lower() not in _TRUE + _FALSE:
        raise ValueError(text)
    return text.lower() in _TRUE


#: How the command-line text of a join key of each type becomes its value (keyed by the name of
#: Feast's ValueType member; strings pass as they are).
_CONVERT: Dict[str, Callable[[str], Any]] = {
    "INT32": int,
    "INT64": int,
    "UNIX_TIMESTAMP": int,
    "FLOAT": float,
    "DOUBLE": float,
    "BOOL": _bool,
    "BYTES": str.encode,
}


def _input_error(message: str) -> Exception:
    # Imported on use: feast_sequence.errors imports Feast, which `feast-sequence --help` must not load.
    from feast_sequence.errors import SequenceInputError

    return SequenceInputError(message)


def typed_value(key: str, text: str, value_type: Optional[ValueType]) -> Any:
    """``text`` as a value of ``value_type``, the join key ``key``'s type (None: text)."""
    convert = None if value_type is None else _CONVERT.get(value_type.name)
    if value_type is None or convert is None:
        return text
    try:
        return convert(text)
    except ValueError:
        raise _input_error(
            f"Entity {key}={text!r} is not a {value_type.name} value, the type of join key {key!r}; "
            "give a value of that type."
        ) from None


def entity_rows(pairs: Sequence[str], key_types: Mapping[str, ValueType]) -> List[Dict[str, Any]]:
    """``key=value`` arguments (one row per repeat of a key, as Feast's command) as typed entity rows;
    ``key_types`` maps each join key to its Feast ValueType."""
    columns: Dict[str, List[Any]] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise _input_error(f"Entity {pair!r}: use key=value, e.g. customer_id=13085.")
        columns.setdefault(key, []).append(typed_value(key, text, key_types.get(key)))
    counts = {key: len(values) for key, values in columns.items()}
    if len(set(counts.values())) > 1:
        raise _input_error(f"Every entity key needs one value per row; got {counts}.")
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def view_entity_row(view_name: str, join_keys: Mapping[str, ValueType], keys: Sequence[str]) -> Dict[str, Any]:
    """``customer_id=123`` (one per join key), or a bare ``123`` when the view has one join key, as
    an entity row of the view ``view_name``, whose ``join_keys`` map each name to its ValueType."""
    names = ", ".join(join_keys)
    if len(keys) == 1 and "=" not in keys[0]:
        if len(join_keys) != 1:
            raise _input_error(f"View '{view_name}' has join keys {names}: give each as NAME=VALUE.")
        keys = [f"{next(iter(join_keys))}={keys[0]}"]
    row: Dict[str, Any] = {}
    for key in keys:
        name, sep, text = key.partition("=")
        if not sep or name not in join_keys:
            raise _input_error(f"{key!r}: use NAME=VALUE with NAME one of {names} (view '{view_name}').")
        row[name] = typed_value(name, text, join_keys[name])
    missing = [n for n in join_keys if n not in row]
    if missing:
        raise _input_error(f"View '{view_name}': missing join key(s) {', '.join(missing)}.")
    return row
