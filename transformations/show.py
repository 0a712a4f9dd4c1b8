"""``feast-sequence show``: one entity's sequence as a table, read through the store's normal read
path (``get_online_features``), or with ``--use-case`` the shaped output a model got for it.

Redis keys hold binary length prefixes, so redis-cli cannot show a sequence; this can.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import click
import pandas as pd
from feast import FeatureStore
from feast.value_type import ValueType

from feast_sequence.definitions.settings import SequenceSettings, sequence_settings
from feast_sequence.transformations.command_line import JobCommand, repo_option

_INTEGERS = {ValueType.INT32, ValueType.INT64, ValueType.UNIX_TIMESTAMP}
_FLOATS = {ValueType.FLOAT, ValueType.DOUBLE}


def entity_row(settings: SequenceSettings, keys: Sequence[str]) -> Dict[str, Any]:
    """``customer_id=123`` (one per join key), or a bare ``123`` when the view has one join key, as
    an entity row with each value of its join key's type."""
    types = dict(settings.join_keys)
    names = ", ".join(types)
    if len(keys) == 1 and "=" not in keys[0]:
        if len(types) != 1:
            raise click.BadParameter(
                f"view '{settings.view_name}' has join keys {names}: give each as NAME=VALUE", param_hint="ENTITY_KEY"
            )
        keys = [f"{next(iter(types))}={keys[0]}"]
    row: Dict[str, Any] = {}
    for key in keys:
        name, sep, text = key.partition("=")
        if not sep or name not in types:
            raise click.BadParameter(f"{key!r}: use NAME=VALUE with NAME one of {names}", param_hint="ENTITY_KEY")
        row[name] = _typed(name, types[name], text)
    missing = [n for n in types if n not in row]
    if missing:
        raise click.BadParameter(f"missing join key(s) {', '.join(missing)}", param_hint="ENTITY_KEY")
    return row


def _typed(name: str, value_type: ValueType, text: str) -> Any:
    try:
        if value_type in _INTEGERS:
            return int(text)
        if value_type in _FLOATS:
            return float(text)
    except ValueError:
        raise click.BadParameter(f"{name}={text!r} is not a {value_type.name} value", param_hint="ENTITY_KEY") from None
    if value_type == ValueType.BOOL:
        return text.lower() in ("1", "true", "yes")
    return text


def tables(response: Dict[str, List[Any]]) -> Tuple[Dict[str, Any], List[pd.DataFrame]]:
    """One entity's response split into its scalar values (join keys, regular features) and tables:
    the list-valued columns, one table per list length (a use case's views may be cut differently)."""
    scalars: Dict[str, Any] = {}
    by_length: Dict[int, Dict[str, List[Any]]] = {}
    for name, values in response.items():
        value = values[0]
        if isinstance(value, (list, tuple)):
            by_length.setdefault(len(value), {})[name] = list(value)
        else:
            scalars[name] = value
    return scalars, [pd.DataFrame(columns) for _, columns in sorted(by_length.items(), reverse=True)]


def render(title: str, response: Dict[str, List[Any]], limit: int) -> str:
    scalars, frames = tables(response)
    lines = [title]
    lines += [f"  {name}: {value}" for name, value in scalars.items()]
    if not frames:
        lines.append("  (no sequence features)")
    for frame in frames:
        shown = frame if limit <= 0 else frame.head(limit)
        if frame.empty:
            lines.append(f"  (empty: no events for {', '.join(frame.columns)})")
            continue
        lines.append("  " + shown.to_string(index=False).replace("\n", "\n  "))
        if len(shown) < len(frame):
            lines.append(f"  ... {len(frame) - len(shown):,} more (--limit 0 shows all)")
    return "\n".join(lines)


@click.command(
    "show",
    cls=JobCommand,
    short_help="Print one entity's sequence (or a use case's output) as a table.",
)
@click.argument("view")
@click.argument("entity_key", nargs=-1, required=True)
@repo_option
@click.option("--use-case", help="a FeatureService: print its shaped output for the entity, as a model gets it")
@click.option("--limit", type=int, default=20, show_default=True, help="events shown per table (0: all)")
def command(view: str, entity_key: Tuple[str, ...], repo: str, use_case: Optional[str], limit: int) -> int:
    """Print VIEW's sequence for one entity, newest first, as the store serves it.

    ENTITY_KEY is NAME=VALUE for each join key (customer_id=12347), or just the value when the view
    has one join key (12347). With --use-case, print that FeatureService's output for the entity
    instead: filtered, cut, enriched and padded as a model received it.
    """
    store = FeatureStore(repo_path=repo)
    settings = sequence_settings(store.get_feature_view(view))
    row = entity_row(settings, entity_key)
    key = ", ".join(f"{k}={v}" for k, v in row.items())
    if use_case:
        service = store.get_feature_service(use_case)
        response = store.get_online_features(features=service, entity_rows=[row], full_feature_names=True).to_dict()
        click.echo(render(f"use case '{use_case}' for {key}:", response, limit))
        return 0
    fields = [*settings.field_names, settings.timestamp_field]
    refs = [f"{view}:{name}" for name in dict.fromkeys(fields)]
    response = store.get_online_features(features=refs, entity_rows=[row]).to_dict()
    events = len(next((v[0] for n, v in response.items() if n not in row and isinstance(v[0], list)), []))
    click.echo(render(f"{view} for {key}: {events:,} events, newest first", response, limit))
    return 0
