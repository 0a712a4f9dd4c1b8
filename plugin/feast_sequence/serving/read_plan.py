"""The reads of one online request, planned once for Feast's path and for a use case's pipeline.

``plan_reads`` turns Feast's grouped feature refs into every view's Redis commands, sequence or
regular, to send in one pipeline, at one request time read from the store's clock. A plain request
(``get_online_features`` with feature refs) reads each sequence as stored; a use case's request
narrows each read to the use case's window, and to its length when it has no filters. Each view's
replies are then a slice of the pipeline's: ``ReadPlan.views`` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, Union

from feast import FeatureView
from feast.repo_config import RepoConfig

from feast_sequence import feast_internals
from feast_sequence.definitions.settings import is_sequence_view
from feast_sequence.definitions.use_case import SequenceSpec
from feast_sequence.serving.enrichment_cache import EnrichmentCaches
from feast_sequence.serving.plan_cache import PlanCache
from feast_sequence.serving.retrieve import retrieve_commands
from feast_sequence.serving.views import ViewPlan
from feast_sequence.storage.read import check_entity_limit
from feast_sequence.storage.redis_io import Command

#: ``fill(replies, response, full_feature_names, include_version_metadata)``: one regular view's
#: replies into Feast's response.
Fill = Callable[[List[Any], Any, bool, bool], None]


class ServingStore(Protocol):
    """What serving needs from the online store (``SequenceRedisOnlineStore`` is one)."""

    #: This store's serving-time enrichment caches.
    enrichment_caches: EnrichmentCaches
    #: Each view's settings and decode plans, once per registry version.
    plan_cache: PlanCache
    #: The request time (seconds since the epoch): TTLs, windows and ages count from it.
    clock: Callable[[], float]

    def plan_regular_read(
        self, config: RepoConfig, table: FeatureView, requested: List[str], values: Any, idxs: Any, output_len: int
    ) -> Tuple[List[Command], Fill]:
        """A regular view's commands, and how its replies fill Feast's response."""
        ...


#: A plain request's spec: each sequence read as stored (its max_length, no window).
AS_STORED = SequenceSpec()


@dataclass
class ViewRead:
    """One view's share of the pipeline: its replies are ``replies[start:end]``; ``view`` is a
    sequence view's plan, or a regular view's ``Fill``."""

    start: int
    end: int
    view: Union[ViewPlan, Fill]


@dataclass
class ReadPlan:
    """Every view's commands of one request, in feature-ref order, and the request's time."""

    now_us: int
    commands: List[Command] = field(default_factory=list)
    views: List[ViewRead] = field(default_factory=list)

    @property
    def sequence_views(self) -> List[ViewPlan]:
        return [read.view for read in self.views if isinstance(read.view, ViewPlan)]

    def add(self, commands: List[Command], view: Union[ViewPlan, Fill]) -> None:
        start = len(self.commands)
        self.commands.extend(commands)
        self.views.append(ViewRead(start, len(self.commands), view))


def plan_reads(
    store: ServingStore,
    config: RepoConfig,
    project: str,
    grouped_refs: List[Tuple[Any, List[str]]],
    join_key_values: Dict[str, List[Any]],
    entity_name_to_join_key_map: Dict[str, str],
    spec_of: Optional[Callable[[str], SequenceSpec]] = None,
) -> ReadPlan:
    """Every view's reads of one request; ``spec_of(view name)``: a use case's shaping of each
    sequence view (None: sequences as stored). Sequence views cover at most the store's
    ``max_entities_per_request`` distinct entities each."""
    plan = ReadPlan(now_us=int(store.clock() * 1_000_000))  # one "now" for the whole request
    key_cache: Dict[Tuple[int, ...], bytes] = {}  # entity key bytes, shared by the request's views
    for table, requested in grouped_refs:
        values, idxs, output_len = feast_internals.unique_entities(table, join_key_values, entity_name_to_join_key_map)
        if not is_sequence_view(table):
            plan.add(*store.plan_regular_read(config, table, requested, values, idxs, output_len))
            continue
        check_entity_limit(table.name, len(values), config.online_store.max_entities_per_request)
        settings = store.plan_cache.settings(table)
        name = table.projection.name_to_use()
        spec = AS_STORED if spec_of is None else spec_of(name)
        view = ViewPlan(table, name, settings, spec, list(requested), idxs, output_len)
        plan.add(retrieve_commands(settings, spec, project, values, plan.now_us, key_cache), view)
    return plan
