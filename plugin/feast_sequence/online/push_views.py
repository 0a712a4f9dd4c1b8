"""Which feature views a push source feeds, read from the registry and cached per registry version.

Feast's ``store.push`` writes a push source's views one after another (in set order), handing the
provider one view at a time. To reject a push that is bad for any of its views before writing to
the first, the provider needs the others; it keeps its own registry handle for that, refreshed on
the registry's ``cache_ttl_seconds`` as Feast's own cache is.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from feast import FeatureStore, FeatureView
from feast.data_source import PushSource
from feast.repo_config import RegistryConfig, RepoConfig


class PushSourceViews:
    """Push source name -> the feature views it feeds (online ones), per registry version."""

    def __init__(self, config: RepoConfig):
        self._config = config
        self._registry: Any = None
        self._proto: Any = None
        self._refreshed_at: Optional[float] = None
        self._index: Dict[str, List[FeatureView]] = {}

    def fed_by(self, push_source_name: str) -> List[FeatureView]:
        registry = self._current_registry()
        proto = registry.proto()
        if proto is not self._proto:
            self._index = _index(registry.list_feature_views(self._config.project, allow_cache=True))
            self._proto = proto
        return self._index.get(push_source_name, [])

    def _current_registry(self) -> Any:
        if self._registry is None:
            self._registry = FeatureStore(repo_path=str(self._config.repo_path), config=self._config).registry
        registry_config = self._config.registry  # a RegistryConfig, or a custom registry's own object
        ttl = registry_config.cache_ttl_seconds if isinstance(registry_config, RegistryConfig) else 600
        now = time.monotonic()
        if self._refreshed_at is None or (ttl > 0 and now - self._refreshed_at > ttl):
            self._registry.refresh(self._config.project)
            self._refreshed_at = now
        return self._registry


def _index(views: List[FeatureView]) -> Dict[str, List[FeatureView]]:
    index: Dict[str, List[FeatureView]] = {}
    for view in views:
        source = view.stream_source
        if isinstance(source, PushSource) and view.online:
            index.setdefault(source.name, []).append(view)
    return index
