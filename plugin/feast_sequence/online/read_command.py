"""``feast-sequence get-online-features``: Feast's ``feast get-online-features`` for sequence views.

Feast's command cannot print sequence features as it is: it passes every ``-e key=value`` as text,
which the store refuses for an integer join key (``online/entity_rows.py``: a key of the wrong type
is never cast), and it ``json.dumps`` the response, which fails on the ``datetime`` of any timestamp
feature, a sequence's timestamp list included. This command takes the same options, converts each
value to its join key's declared type, and prints the same JSON with timestamps as ISO 8601 UTC
text and nulls (a padded timestamp included) as ``null``; ``--feature-service`` reads a use case.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import datetime
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from feast import FeatureStore
from feast.value_type import ValueType

from feast_sequence.errors import FeastSequenceError, SequenceInputError


def _bool(text: str) -> bool:
    return {"true": True, "1": True, "false": False, "0": False}[text.lower()]


#: Join key types whose command-line text must be converted (strings pass as they are).
_CONVERT: Dict[ValueType, Callable[[str], Any]] = {
    ValueType.INT32: int,
    ValueType.INT64: int,
    ValueType.FLOAT: float,
    ValueType.DOUBLE: float,
    ValueType.BOOL: _bool,
    ValueType.BYTES: str.encode,
}


def _typed(key: str, text: str, value_type: Optional[ValueType]) -> Any:
    if value_type is None or value_type not in _CONVERT:
        return text
    try:
        return _CONVERT[value_type](text)
    except (ValueError, KeyError):
        raise SequenceInputError(
            f"Entity {key}={text!r}: the join key {key!r} is {value_type.name}; give a value of that type."
        ) from None


def entity_rows(pairs: Sequence[str], key_types: Mapping[str, ValueType]) -> List[Dict[str, Any]]:
    """``key=value`` arguments (one row per repeat of a key, as Feast's command) as typed entity rows."""
    columns: Dict[str, List[Any]] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise SequenceInputError(f"Entity {pair!r}: use key=value, e.g. customer_id=13085.")
        columns.setdefault(key, []).append(_typed(key, text, key_types.get(key)))
    counts = {key: len(values) for key, values in columns.items()}
    if len(set(counts.values())) > 1:
        raise SequenceInputError(f"Every entity key needs one value per row; got {counts}.")
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):  # as Feast's HTTP server writes bytes
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(features: Mapping[str, Any]) -> str:
    """``OnlineResponse.to_dict()`` as JSON: timestamps ISO 8601 (UTC), None as null."""
    return json.dumps(features, indent=4, default=_json_value)


def join_key_types(store: FeatureStore) -> Dict[str, ValueType]:
    return {entity.join_key: entity.value_type for entity in store.list_entities()}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="feast-sequence get-online-features", description=__doc__.splitlines()[0].split(": ", 1)[1]
    )
    parser.add_argument("--repo", default=".", help="feature repository (with feature_store.yaml)")
    parser.add_argument("-e", "--entities", action="append", default=[], help="key=value, once per key and row")
    parser.add_argument("-f", "--features", action="append", default=[], help="view:feature (repeatable)")
    parser.add_argument("--feature-service", help="a feature service or sequence use case, instead of -f")
    parser.add_argument("--full-feature-names", action="store_true", help="name features view__feature")
    args = parser.parse_args(argv)
    if bool(args.features) == bool(args.feature_service) or not args.entities:
        parser.error("give -e key=value and either -f view:feature or --feature-service NAME")
    try:
        store = FeatureStore(repo_path=args.repo)
        features: Any = store.get_feature_service(args.feature_service) if args.feature_service else args.features
        rows = entity_rows(args.entities, join_key_types(store))
        response = store.get_online_features(
            features=features, entity_rows=rows, full_feature_names=args.full_feature_names
        )
    except FeastSequenceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(to_json(response.to_dict()))
    return 0
