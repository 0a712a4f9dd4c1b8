"""An online request through Feast's path: the shared read plan, and each view's replies into Feast's response.

``plan_request`` takes every view's commands from the one read planner (serving/read_plan.py, which
a use case's pipeline uses too) and a ``RequestPlan`` puts each view's replies into Feast's response:
sequence views as storage/read.py decodes them, regular views as Feast's Redis store would
(feast_internals.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

from feast import FeatureView
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.repo_config import RepoConfig

from feast_sequence import feast_internals
from feast_sequence.definitions.settings import SequenceSettings, sequence_settings
from feast_sequence.definitions.use_case import is_use_case
from feast_sequence.errors import SequenceDefinitionError
from feast_sequence.online.entity_rows import check_entity_rows, check_request_shape, sequence_key_columns
from feast_sequence.serving.plain_response import populate_sequences
from feast_sequence.serving.read_plan import Fill, ServingStore, plan_reads
from feast_sequence.serving.views import ViewPlan
from feast_sequence.storage.redis_io import Command


class RequestPlan:
    """The commands of one online request and, per view, how to put their replies into the response."""

    def __init__(self) -> None:
        self.commands: List[Command] = []
        self._parts: List[Tuple[int, int, Fill]] = []

    def add(self, commands: List[Command], fill: Fill) -> None:
        """One view's commands, and how its replies (in the same order) fill the response."""
        start = len(self.commands)
        self.commands.extend(commands)
        self._parts.append((start, len(self.commands), fill))

    def populate(
        self, replies: List[Any], response: Any, full_feature_names: bool, include_version_metadata: bool
    ) -> None:
        """Fill the response from the replies to ``commands``, view by view in the order they were added."""
        for start, end, fill in self._parts:
            fill(replies[start:end], response, full_feature_names, include_version_metadata)


def plan_request(
    store: ServingStore,
    config: RepoConfig,
    grouped_refs: List[Tuple[Any, List[str]]],
    join_key_values: Dict[str, List[Any]],
    entity_name_to_join_key_map: Dict[str, str],
) -> RequestPlan:
    """Every view's commands of one request (``plan_reads``), each sequence as stored."""
    reads = plan_reads(store, config, config.project, grouped_refs, join_key_values, entity_name_to_join_key_map)
    plan = RequestPlan()
    for read in reads.views:
        view = read.view
        commands = reads.commands[read.start : read.end]
        if isinstance(view, ViewPlan):
            read_plan = store.plan_cache.sequence_read(view.table, view.requested)
            fill: Fill = partial(populate_sequences, read_plan, view.table, view.idxs, view.output_len, commands)
        else:
            fill = view
        plan.add(commands, fill)
    return plan


def plan_regular_read(
    store: RedisOnlineStore,
    config: RepoConfig,
    table: FeatureView,
    requested_features: List[str],
    values: Any,
    idxs: Any,
    output_len: int,
) -> Tuple[List[Command], Fill]:
    """A regular view's HMGETs, and how to put their replies into the response (Feast's way)."""
    fv_name = feast_internals.versioned_view_name(table, config)
    entity_keys = feast_internals.entity_key_protos(values)
    redis_keys = feast_internals.redis_keys_for_entities(store, config, entity_keys)
    names, hset_keys = feast_internals.hset_keys_for_features(store, table, list(requested_features), fv_name)
    commands: List[Command] = [("HMGET", key, *hset_keys) for key in redis_keys]
    return commands, partial(_fill_regular, store, fv_name, names, table, idxs, output_len)


def _fill_regular(
    store: RedisOnlineStore,
    fv_name: str,
    names: List[str],
    table: FeatureView,
    idxs: Any,
    output_len: int,
    replies: List[Any],
    response: Any,
    full_feature_names: bool,
    include_version_metadata: bool,
) -> None:
    """Regular views: Feast's own decoding and response building."""
    rows = feast_internals.regular_rows(store, replies, fv_name, names)
    feast_internals.populate_response(
        names, rows, idxs, response, full_feature_names, table, output_len, include_version_metadata
    )


def is_use_case_request(
    registry: Any,
    project: str,
    features: Any,
    entity_rows: Any,
    full_feature_names: bool,
    settings_of: Callable[[Any], SequenceSettings] = sequence_settings,
) -> bool:
    """Whether a request goes to a use case's serving pipeline; first, refuse its sequence keys of
    the wrong type (for Feast's path too), before Feast's lenient conversion reads them as another
    entity. The request context is the one Feast resolves next (cached); ``settings_of``: a view's
    sequence settings (a store's ``plan_cache.settings``)."""
    check_request_shape(features, entity_rows)
    try:
        entity_name_to_join_key, grouped_refs = feast_internals.request_grouped_refs(
            registry, project, features, full_feature_names
        )
    except KeyError as error:
        unknown = unknown_feature(registry, project, features)
        if unknown is None:
            raise
        raise unknown from error
    columns = sequence_key_columns((table for table, _ in grouped_refs), entity_name_to_join_key, settings_of)
    check_entity_rows(columns, entity_rows)
    return is_use_case(features)


def unknown_feature(registry: Any, project: str, features: Any) -> Optional[SequenceDefinitionError]:
    """The error for a requested ``view:feature`` whose view exists but has no such feature (Feast's
    answer is a bare KeyError, HTTP 500), or None if every named feature exists. Run only after
    Feast refused the request, so a well-formed request does not pay for it."""
    if not isinstance(features, (list, tuple)):
        return None
    views = {v.name: v for v in registry.list_feature_views(project, allow_cache=True)}
    views.update({v.name: v for v in registry.list_on_demand_feature_views(project, allow_cache=True)})
    for ref in features:
        view_name, _, feature = str(ref).partition(":")
        view = views.get(view_name)
        served = [f.name for f in view.features] if view is not None else []
        if view is not None and feature not in served:
            return SequenceDefinitionError(
                f"Feature view '{view_name}' has no feature {feature!r} (requested as {ref!r}); it serves {served}."
            )
    return None
