"""``feast-sequence show``: one entity's sequence as a table, read through the store's normal read
path (``get_online_features``), or with ``--use-case`` the shaped output a model got for it.

Redis keys hold binary length prefixes, so redis-cli cannot show a sequence; this can.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import click

from feast_sequence.cli._options import JobCommand, repo_option
from feast_sequence.cli.entity_arguments import view_entity_row

if TYPE_CHECKING:
    from feast_sequence.definitions.settings import SequenceSettings


def entity_row(settings: SequenceSettings, keys: Sequence[str]) -> Dict[str, Any]:
    """The entity row ENTITY_KEY names (``view_entity_row``), a usage error (exit 2) if it is wrong."""
    from feast_sequence.errors import SequenceInputError

    try:
        return view_entity_row(settings.view_name, dict(settings.join_keys), keys)
    except SequenceInputError as error:
        raise click.BadParameter(str(error), param_hint="ENTITY_KEY") from None


def tables(response: Dict[str, List[Any]], order: Sequence[str] = ()) -> Tuple[Dict[str, Any], List[Any]]:
    """One entity's response split into its scalar values (join keys, regular features) and tables
    (pandas DataFrames): the list-valued columns, one table per list length (a use case's views may
    be cut differently). Columns come in ``order``, then any others by name: Feast's response has
    no stable order of its own."""
    import pandas as pd

    rank = {name: i for i, name in enumerate(order)}
    scalars: Dict[str, Any] = {}
    by_length: Dict[int, Dict[str, List[Any]]] = {}
    for name in sorted(response, key=lambda n: (rank.get(n, len(rank)), n)):
        values = response[name]
        value = values[0]
        if isinstance(value, (list, tuple)):
            by_length.setdefault(len(value), {})[name] = list(value)
        else:
            scalars[name] = value
    return scalars, [pd.DataFrame(columns) for _, columns in sorted(by_length.items(), reverse=True)]


def render(title: str, response: Dict[str, List[Any]], limit: int, order: Sequence[str] = ()) -> str:
    scalars, frames = tables(response, order)
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
    from feast import FeatureStore

    from feast_sequence.cli.online import views_by_name
    from feast_sequence.definitions.settings import is_sequence_view, sequence_settings
    from feast_sequence.errors import SequenceDefinitionError

    store = FeatureStore(repo_path=repo)
    sequence_views = [v for v in views_by_name(store).values() if is_sequence_view(v)]
    found = next((v for v in sequence_views if v.name == view), None)
    if found is None:
        names = ", ".join(v.name for v in sequence_views) or "none"
        raise SequenceDefinitionError(f"No sequence view {view!r} in {repo}; sequence views: {names}.")
    settings = sequence_settings(found)
    row = entity_row(settings, entity_key)
    key = ", ".join(f"{k}={v}" for k, v in row.items())
    if use_case:
        service = store.get_feature_service(use_case)
        response = store.get_online_features(features=service, entity_rows=[row], full_feature_names=True).to_dict()
        order = [*row, *(f"{p.name_to_use()}__{f.name}" for p in service.feature_view_projections for f in p.features)]
        click.echo(render(f"use case '{use_case}' for {key}:", response, limit, order))
        return 0
    # As the docs print it: the join keys, the timestamp, then the fields in the view's order.
    order = [*row, *dict.fromkeys([settings.timestamp_field, *settings.field_names])]
    refs = [f"{view}:{name}" for name in order[len(row) :]]
    response = store.get_online_features(features=refs, entity_rows=[row]).to_dict()
    events = len(next((v[0] for n, v in response.items() if n not in row and isinstance(v[0], list)), []))
    click.echo(render(f"{view} for {key}: {events:,} events, newest first", response, limit, order))
    return 0
