"""Feast's permissions on what a push writes and what an online read reads, asserted before any write or read.

Feast enforces permissions in its servers: an endpoint asserts actions on the objects a request
names, through the process's security manager (set up by ``feast serve``, ``feast-sequence serve``
and Feast's other servers, and by a test). Without one, in a plain ``FeatureStore``, every check
here passes, as in Feast. With one, a push needs ``WRITE_ONLINE`` (``WRITE_OFFLINE`` offline, both
for ``online_and_offline``) on every view its source feeds, and an online read ``READ_ONLINE`` on
every object it reads: its feature service, feature views and on-demand views, and the views its
use case joins for serving-time enrichment, which Feast's endpoint cannot see (for a feature
service it checks the service alone). The decisions are Feast's (``assert_permissions``).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Sequence

from feast import FeatureService
from feast.data_source import PushMode
from feast.permissions.action import WRITE, AuthzedAction
from feast.permissions.security_manager import assert_permissions, get_security_manager, is_auth_necessary

from feast_sequence import feast_internals
from feast_sequence.definitions.use_case import is_use_case, use_case_settings

_PUSH_ACTIONS: Dict[PushMode, List[AuthzedAction]] = {
    PushMode.ONLINE: [AuthzedAction.WRITE_ONLINE],
    PushMode.OFFLINE: [AuthzedAction.WRITE_OFFLINE],
    PushMode.ONLINE_AND_OFFLINE: list(WRITE),
}


def checks_permissions() -> bool:
    """Whether this process checks permissions for the current caller (a server's request)."""
    return is_auth_necessary(get_security_manager())


def assert_can_push(views: Sequence[Any], to: PushMode) -> None:
    """Raise Feast's ``FeastPermissionError`` (403) unless the caller may write every view of a push."""
    if checks_permissions():
        for view in views:
            assert_permissions(resource=view, actions=_PUSH_ACTIONS[to])


def assert_can_read(registry: Any, project: str, features: Any) -> None:
    """Raise Feast's ``FeastPermissionError`` (403) unless the caller may read every object an online
    request for ``features`` (refs or a feature service) reads."""
    if not checks_permissions():
        return
    for resource in _read_objects(registry, project, features):
        assert_permissions(resource=resource, actions=[AuthzedAction.READ_ONLINE])


def _read_objects(registry: Any, project: str, features: Any) -> Iterable[Any]:
    if isinstance(features, FeatureService):
        yield features
    views, on_demand_views = feast_internals.online_views_to_use(registry, project, features)
    yield from views
    yield from on_demand_views
    if is_use_case(features):
        joined = {e.view for spec in use_case_settings(features).sequences.values() for e in spec.enrich}
        for name in sorted(joined):
            yield registry.get_feature_view(name, project, allow_cache=True)
