"""Errors a client can act on: HTTP statuses from `feast serve`, truthful outage messages, and default
timeouts that stop a silent Redis from blocking a push. Real redis-servers and real sockets only."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from feast import FeatureStore

from conftest import feature_store_yaml
from feast_sequence import (
    Limits,
    SequenceInputError,
    SequenceRequestError,
    SequenceSpec,
    SequenceStoreUnavailableError,
    SequenceUseCase,
)
from feast_sequence.local_redis import LocalRedis
from feast_server import feast_serve, module_repo, post

TIMEOUTS = "socket_timeout=1,socket_connect_timeout=0.5"


def refused(port: int, path: str, body: Dict[str, Any]) -> Tuple[int, str]:
    """The HTTP status and the error message of a request `feast serve` refuses."""
    with pytest.raises(urllib.error.HTTPError) as error:
        post(port, path, body)
    text: str = json.loads(error.value.read().decode())
    # Feast's handler sends a FeastError's to_error_detail(), a JSON document, as a JSON string;
    # any other exception as its text.
    message = json.loads(text)["message"] if text.startswith("{") else text
    return error.value.code, message


def click_rows(users: List[int], n: List[Any]) -> Dict[str, List[Any]]:
    return {
        "user_id": users,
        "item_id": [f"i{u}" for u in users],
        "kind": ["buy"] * len(users),
        "n": n,
        "ts": ["2024-01-01T10:00:00+00:00"] * len(users),
    }


def test_feast_serve_maps_errors_to_http_statuses(tmp_path: Path) -> None:
    with LocalRedis() as server:  # private: the test stops it
        repo = tmp_path / "repo"
        env = module_repo(
            repo,
            "serving_repo",
            feature_store_yaml(
                "http_errors",
                f"{server.connection_string},{TIMEOUTS}",
                online_extra="max_entities_per_request: 5",
            ),
        )
        store = FeatureStore(repo_path=str(repo))
        hurried = SequenceUseCase(
            name="hurried",
            features=[store.get_feature_view("clicks")[["item_id"]]],
            sequences={"clicks": SequenceSpec(length=1)},
            limits=Limits(time_budget_ms=1e-6),  # exceeded after the first stage, every time
        )
        store.apply([hurried])
        with feast_serve(repo, env=env) as port:
            push = {"push_source_name": "clicks_push", "to": "online"}
            post(port, "/push", {**push, "df": click_rows([1, 2], [1, 2])})

            status, message = refused(port, "/push", {**push, "df": click_rows([1, 2], [1, "seven"])})
            assert status == 422
            assert "Column 'n', row 1" in message and "'seven' cannot be converted to INT32" in message

            users = {"user_id": [0, 1, 2, 3, 4, 5]}
            status, message = refused(
                port, "/get-online-features", {"features": ["clicks:item_id"], "entities": users}
            )
            assert status == 413 and "exceeds max_entities_per_request=5" in message

            status, message = refused(
                port, "/get-online-features", {"feature_service": "recent", "entities": {"user_id": [0, 1, 2, 3]}}
            )
            assert status == 413 and "max_entities=3" in message

            status, message = refused(
                port, "/get-online-features", {"feature_service": "hurried", "entities": {"user_id": [1]}}
            )
            assert status == 429 and "exceeded its time budget" in message

            server.kill()
            status, message = refused(port, "/push", {**push, "df": click_rows([1], [3])})
            assert status == 503 and "could not be reached" in message
            for read in ({"features": ["clicks:item_id"]}, {"feature_service": "recent"}):
                status, message = refused(port, "/get-online-features", {**read, "entities": {"user_id": [1]}})
                assert status == 503 and "could not be reached" in message, read


def test_errors_are_feast_errors_with_their_status() -> None:
    """Feast's servers map any FeastError to its status; messages and except clauses still work."""
    from feast.errors import FeastError

    error = SequenceInputError("Column 'n', row 1: 'seven' cannot be converted to INT32.")
    assert isinstance(error, FeastError) and isinstance(error, ValueError)
    assert str(error) == "Column 'n', row 1: 'seven' cannot be converted to INT32."
    assert json.loads(error.to_error_detail())["message"] == str(error)
    assert SequenceStoreUnavailableError("down").http_status_code() == 503
    assert SequenceRequestError("too many").http_status_code() == 413
    budget = SequenceRequestError("too slow", http_status=429)
    assert budget.http_status_code() == 429
    import pickle

    assert pickle.loads(pickle.dumps(budget)).http_status_code() == 429
