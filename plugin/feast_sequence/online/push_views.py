"""Which feature views a push source feeds, read from a registry once per registry version.

Feast's ``store.push`` rebuilds every feature view of the registry from its protobuf on each call
(about 0.6 ms per view), only to pick the few its push source feeds. This index is rebuilt only
when the registry's cached proto changes, which happens exactly when Feast's own cache refresh
would load a new one (``feast_internals.current_registry_proto``: cache TTL, file change), so a
``feast apply`` takes effect here at the same moment as in Feast's reads. Per call it costs one
cache check; the views are selected as ``FeatureStore._fvs_for_push_source_or_raise`` selects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from feast.data_source import PushSource
from feast.errors import PushSourceNotFoundException
from feast.feature_view import DUMMY_ENTITY_NAME, FeatureView

from feast_sequence.feast_internals import current_registry_proto


@dataclass(frozen=True)
class PushTargets:
    """What one push to a push source writes, for one registry version."""

    views: Tuple[Any, ...]
    """The feature, stream and label views whose source is the push source (Feast's selection)."""
    precomputed_services: Dict[str, Tuple[str, ...]]
    """View name -> the ``FeatureService(precompute_online=True)`` names that include it."""


@dataclass(frozen=True)
class _Version:
    proto: Any
    targets: Dict[str, PushTargets]


class PushSourceViews:
    """Push source name -> the views it feeds, per version of ``registry`` (any Feast registry)."""

    def __init__(self, registry: Any, project: str):
        self.registry = registry
        self._project = project
        # One attribute, replaced whole, so a reader racing a rebuild sees one version or the other.
        self._version: Optional[_Version] = None

    def resolve(self, push_source_name: str, allow_cache: bool = True) -> PushTargets:
        """The views ``store.push(push_source_name, ...)`` writes; Feast's
        ``PushSourceNotFoundException`` when none (as ``store.push``)."""
        targets = self._current(allow_cache).get(push_source_name)
        if targets is None:
            raise PushSourceNotFoundException(push_source_name)
        return targets

    def fed_by(self, push_source_name: str) -> List[Any]:
        """The views of a push source, none for an unknown one."""
        targets = self._current(True).get(push_source_name)
        return list(targets.views) if targets else []

    def _current(self, allow_cache: bool) -> Dict[str, PushTargets]:
        proto = current_registry_proto(self.registry, self._project, allow_cache)
        version = self._version
        if version is None or version.proto is not proto:
            version = _Version(proto, self._index())
            self._version = version
        return version.targets

    def _index(self) -> Dict[str, PushTargets]:
        registry, project = self.registry, self._project
        views: List[Any] = [
            *registry.list_feature_views(project, allow_cache=True),
            *registry.list_stream_feature_views(project, allow_cache=True),
        ]
        by_source: Dict[str, List[Any]] = {}
        for view in views:
            source = view.stream_source
            if isinstance(source, PushSource):
                by_source.setdefault(source.name, []).append(_without_dummy_entity(view))
        for label_view in registry.list_label_views(project, allow_cache=True):
            if isinstance(label_view.source, PushSource):
                by_source.setdefault(label_view.source.name, []).append(label_view)
        services = _precomputed_services(registry.list_feature_services(project, allow_cache=True))
        return {
            name: PushTargets(tuple(fed), {v.name: services[v.name] for v in fed if v.name in services})
            for name, fed in by_source.items()
        }


def _without_dummy_entity(view: Any) -> Any:
    """As ``FeatureStore.list_all_feature_views`` hands views to the provider: an entityless view
    without the registry's placeholder entity."""
    if isinstance(view, FeatureView) and view.entities and view.entities[0] == DUMMY_ENTITY_NAME:
        view.entities = []
        view.entity_columns = []
    return view


def _precomputed_services(services: Iterable[Any]) -> Dict[str, Tuple[str, ...]]:
    by_view: Dict[str, List[str]] = {}
    for service in services:
        if service.precompute_online:
            for projection in service.feature_view_projections:
                by_view.setdefault(projection.name, []).append(service.name)
    return {view: tuple(names) for view, names in by_view.items()}
