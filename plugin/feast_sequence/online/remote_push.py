"""``feast_sequence.push`` from a client whose ``online_store`` is ``type: remote``: one ``POST /push``.

Feast's remote client cannot carry a push to sequence views: ``store.push`` converts each view's
rows to Feast's values on the client (a sequence view's schema holds lists, its events are scalars)
and sends them view by view to ``/write-to-online-store``. So ``feast_sequence.push`` sends the
frame as it is to the server's ``/push`` (``feast-sequence serve``), which validates it for every
view, checks the caller's permissions on every view and writes it, as a local push would. The
request carries the client's credentials (Feast's authenticated session, ``auth`` in
feature_store.yaml), and the server's Feast errors are raised again on the client with their own
class (Feast's ``rest_error_handling_decorator``): ``FeastPermissionError``, ``SequenceInputError``...
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pandas as pd
import requests
from feast.data_source import PushMode
from feast.infra.online_stores.remote import RemoteOnlineStoreConfig
from feast.repo_config import RepoConfig
from feast.rest_error_handler import rest_error_handling_decorator

from feast_sequence.errors import SequenceStoreError

_TO = {PushMode.ONLINE: "online", PushMode.OFFLINE: "offline", PushMode.ONLINE_AND_OFFLINE: "online_and_offline"}


def is_remote(config: RepoConfig) -> bool:
    """Whether ``config``'s online store is a feature server (``online_store: type: remote``)."""
    return isinstance(config.online_store, RemoteOnlineStoreConfig)


def push_remote(
    config: RepoConfig, push_source_name: str, df: pd.DataFrame, to: PushMode, allow_registry_cache: bool
) -> None:
    """Send a push to the feature server at ``online_store.path``; raise what it answered."""
    body = {
        "push_source_name": push_source_name,
        "df": _columns(df),
        "to": _TO[to],
        "allow_registry_cache": allow_registry_cache,
    }
    response = _post_push(config, body)
    if response.status_code not in (200, 202):  # Feast errors were raised by the session already
        raise SequenceStoreError(
            f"Push to '{push_source_name}' through {config.online_store.path}/push answered "
            f"{response.status_code}: {response.text[:500]}"
        )


def _columns(df: pd.DataFrame) -> Dict[str, List[Any]]:
    """The frame as the JSON ``/push`` takes (column -> values), timestamps in ISO 8601 to the microsecond."""
    return {str(name): json.loads(df[name].to_json(orient="values", date_format="iso", date_unit="us")) for name in df}


@rest_error_handling_decorator  # type: ignore[untyped-decorator]
def _post_push(session: requests.Session, config: RepoConfig, body: Dict[str, Any]) -> requests.Response:
    online = config.online_store
    verify = online.cert or True
    response: requests.Response = session.post(f"{online.path}/push", json=body, verify=verify)
    return response
