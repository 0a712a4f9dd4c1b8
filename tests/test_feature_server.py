"""`feast serve`: the HTTP /push and /get-online-features endpoints work with sequence views."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from feast_server import feast_serve, post


@pytest.fixture
def server(retail_repo: Path, redis_server, redis_client):
    env = {**os.environ, "FEAST_SEQUENCE_REDIS": redis_server.connection_string}
    with feast_serve(retail_repo, env=env) as port:
        yield port


def test_http_push_then_read(server):
    rows = {
        "customer_id": [42, 42, 42],
        "invoice": ["1", "1", "2"],
        "item_id": ["a", "b", "a"],
        "quantity": [1, 2, 3],
        "unit_price": [1.5, 2.5, 3.5],
        "event_timestamp": ["2010-01-01T10:00:00", "2010-01-01T10:00:00", "2010-01-02T10:00:00"],
    }
    post(server, "/push", {"push_source_name": "purchase_push", "df": rows, "to": "online"})
    body = post(
        server,
        "/get-online-features",
        {
            "features": ["customer_purchases:item_id", "customer_purchases:quantity"],
            "entities": {"customer_id": [42, 7]},
        },
    )
    names = body["metadata"]["feature_names"]
    values = {name: result["values"] for name, result in zip(names, body["results"])}
    assert values["item_id"] == [["a", "b", "a"], []]
    assert values["quantity"] == [[3, 2, 1], []]
