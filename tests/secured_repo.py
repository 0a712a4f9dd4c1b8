"""serving_repo's definitions with Feast permissions: one role per kind of caller the
client/server tests play (tests/test_client_server.py). A caller's roles come from its token."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

from feast import FeatureService, FeatureView
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.permissions.action import AuthzedAction
from feast.permissions.permission import Permission
from feast.permissions.policy import RoleBasedPolicy

import serving_repo

#: Role -> what it may do. ``clicks_writer`` may write one of the two views clicks_push feeds;
#: ``sequence_reader`` may read the sequence views and every service, but not the items view
#: the use cases join for enrichment.
ROLES = ("writer", "clicks_writer", "offline_writer", "reader", "sequence_reader")
READABLE: List[Any] = [FeatureView, OnDemandFeatureView, FeatureService]


def objects(data_dir: Path) -> List[Any]:
    return [*serving_repo.objects(data_dir), *permissions()]


def permissions() -> List[Permission]:
    def grant(name: str, role: str, actions: List[AuthzedAction], types: List[Any], patterns: Any = ()) -> Permission:
        return Permission(
            name=name, types=types, name_patterns=list(patterns), actions=actions, policy=RoleBasedPolicy(roles=[role])
        )

    return [
        grant("write_online", "writer", [AuthzedAction.WRITE_ONLINE], [FeatureView]),
        grant("write_clicks", "clicks_writer", [AuthzedAction.WRITE_ONLINE], [FeatureView], ["^clicks$"]),
        grant("write_offline", "offline_writer", [AuthzedAction.WRITE_OFFLINE], [FeatureView]),
        grant("read_online", "reader", [AuthzedAction.READ_ONLINE], READABLE),
        grant("read_sequences", "sequence_reader", [AuthzedAction.READ_ONLINE], [FeatureView], ["^clicks"]),
        grant("read_services", "sequence_reader", [AuthzedAction.READ_ONLINE], [OnDemandFeatureView, FeatureService]),
    ]
