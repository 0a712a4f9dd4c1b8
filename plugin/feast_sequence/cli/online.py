"""The online store's commands: ``get-online-features``, ``health`` and ``serve``.

``get-online-features`` is Feast's ``feast get-online-features`` for sequence views. Feast's command
cannot print sequence features as it is: it passes every ``-e key=value`` as text, which the store
refuses for an integer join key (``online/entity_rows.py``: a key of the wrong type is never cast),
and it ``json.dumps`` the response, which fails on the ``datetime`` of any timestamp feature, a
sequence's timestamp list included. This command takes the same options, converts each value to its
join key's declared type, and prints the same JSON with timestamps as ISO 8601 UTC text and nulls
(a padded timestamp included) as ``null``; ``--feature-service`` reads a use case.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import click

from feast_sequence.cli._options import REPO_HELP, JobCommand, repo_option
from feast_sequence.cli.entity_arguments import entity_rows


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):  # as Feast's HTTP server writes bytes
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(features: Mapping[str, Any]) -> str:
    """``OnlineResponse.to_dict()`` as JSON: timestamps ISO 8601 (UTC), None as null."""
    return json.dumps(features, indent=4, default=_json_value)


def _names(items: Any) -> str:
    return ", ".join(items) or "none"


def views_by_name(store: Any) -> Dict[str, Any]:
    """Every feature view of the repository a request may name (regular, sequence, on-demand)."""
    views = [*store.list_feature_views(), *store.list_on_demand_feature_views()]
    return {view.name: view for view in views}


def requested_views(store: Any, references: Sequence[str]) -> List[Any]:
    """The views ``view:feature`` references name; a ``SequenceDefinitionError`` naming what is wrong
    and what exists for a malformed reference, an unknown view or an unknown feature."""
    from feast_sequence.errors import SequenceDefinitionError

    views, chosen = views_by_name(store), []
    for reference in references:
        name, separator, feature = reference.partition(":")
        if not separator:
            raise SequenceDefinitionError(f"Feature {reference!r}: use view:feature, e.g. {next(iter(views), 'v')}:x.")
        view = views.get(name)
        if view is None:
            raise SequenceDefinitionError(f"Feature {reference!r}: no feature view {name!r}; views: {_names(views)}.")
        features = [f.name for f in view.features]
        if feature not in features:
            raise SequenceDefinitionError(
                f"Feature {reference!r}: view {name!r} has no feature {feature!r}; its features: {_names(features)}."
            )
        chosen.append(view)
    return chosen


def check_join_keys(views: Sequence[Any], given: Sequence[str]) -> None:
    """Each entity key given is a join key of the requested views, and each of theirs is given."""
    from feast import FeatureView

    from feast_sequence.errors import SequenceInputError

    # An on-demand view has no join keys of its own: its sources' come with them.
    needed = {key: view.name for view in views if isinstance(view, FeatureView) for key in view.join_keys}
    unknown = [key for key in given if key not in needed]
    if unknown:
        raise SequenceInputError(
            f"Entity key {unknown[0]!r} is no join key of {_names(sorted({v.name for v in views}))}; "
            f"their join keys: {_names(needed)}."
        )
    missing = [key for key in needed if key not in given]
    if missing:
        raise SequenceInputError(f"Give -e {missing[0]}=VALUE: view {needed[missing[0]]!r} needs that join key.")


@click.command("get-online-features", cls=JobCommand, short_help="Feast's get-online-features, typed keys, JSON.")
@repo_option
@click.option("-e", "--entities", multiple=True, help="key=value, once per key and row")
@click.option("-f", "--features", multiple=True, help="view:feature (repeatable)")
@click.option("--feature-service", help="a feature service or sequence use case, instead of -f")
@click.option("--full-feature-names", is_flag=True, help="name features view__feature")
def get_online_features(
    repo: str,
    entities: Tuple[str, ...],
    features: Tuple[str, ...],
    feature_service: Optional[str],
    full_feature_names: bool,
) -> int:
    """Read online features of sequence views (and any others), printed as JSON with ISO timestamps."""
    if bool(features) == bool(feature_service) or not entities:
        raise click.UsageError("give -e key=value and either -f view:feature or --feature-service NAME")
    from feast import FeatureStore

    store = FeatureStore(repo_path=repo)
    if feature_service:
        chosen: Any = store.get_feature_service(feature_service)
        views = [views_by_name(store)[p.name] for p in chosen.feature_view_projections]
    else:
        chosen, views = list(features), requested_views(store, features)
    key_types = {entity.join_key: entity.value_type for entity in store.list_entities()}
    rows = entity_rows(entities, key_types)
    check_join_keys(views, list(rows[0]) if rows else [])
    response = store.get_online_features(features=chosen, entity_rows=rows, full_feature_names=full_feature_names)
    click.echo(to_json(response.to_dict()))
    return 0


@click.command("health", cls=JobCommand, short_help="Check that the online store's Redis answers and kept its data.")
@repo_option
def health(repo: str) -> int:
    """Exit 0 when every Redis of the online store answers and holds every applied sequence view's
    record, 1 otherwise: a readiness probe next to `feast serve` (docs/reliability.md)."""
    from feast import FeatureStore

    from feast_sequence.errors import SequenceConfigurationError, SequenceStoreError
    from feast_sequence.online.health import check

    try:
        millis = check(FeatureStore(repo_path=repo))
    except (SequenceStoreError, SequenceConfigurationError) as error:
        click.echo(f"unhealthy: {error}", err=True)
        return 1
    click.echo(f"healthy: Redis answered in {millis:.1f} ms")
    return 0


def _feast_serve_options() -> List[click.Parameter]:
    """``feast serve``'s own options, except that ``-h`` stays help: its ``--host`` loses ``-h``."""
    import copy

    from feast.cli.serve import serve_command

    options = []
    for param in serve_command.params:
        option = copy.copy(param)
        option.opts = [o for o in param.opts if o != "-h"]
        options.append(option)
    return options


class ServeCommand(JobCommand):
    """``serve``'s options are ``feast serve``'s: taken from Feast when the command parses or shows
    help, as importing Feast's CLI takes seconds that ``feast-sequence --help`` should not wait."""

    def get_params(self, ctx: click.Context) -> List[click.Parameter]:
        if not any(p.name == "port" for p in self.params):
            self.params[1:1] = _feast_serve_options()  # after --repo, before --debug and --verbose
        return super().get_params(ctx)


@click.command("serve", cls=ServeCommand, short_help="Feast's feature server, with the fast /push.")
# Not -r: feast serve's own -r is --registry_ttl_sec.
@click.option("--repo", default=".", show_default=True, help=REPO_HELP)
def feature_server(repo: str, type_: str, workers: int, **options: Any) -> int:
    """`feast serve` with a /push whose cost does not grow with the registry (docs/ingest.md); the
    options are feast serve's own, except that -h is help (the host is --host)."""
    if type_ != "http":
        raise click.BadParameter("feast-sequence serve serves HTTP only; use `feast serve -t grpc`.", param_hint="-t")
    import multiprocessing

    from feast import FeatureStore

    from feast_sequence.online.push_server import run_feature_server

    if workers == -1:
        workers = max(1, multiprocessing.cpu_count() * 2 + 1)
    run_feature_server(FeatureStore(repo_path=repo), workers=workers, **options)
    return 0


COMMANDS = (get_online_features, health, feature_server)
