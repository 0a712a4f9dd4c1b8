"""A push source that feeds several views: a value bad for any one view writes nothing to any of
them, on the SDK, async and HTTP paths (Feast writes the views one by one, in set order)."""

from __future__ import annotations

import asyncio
import urllib.error
from pathlib import Path

import pytest

from feast_sequence import SequenceInputError

import multi_view_repo
from conftest import sequence_key_count
from feast_server import feast_serve, module_repo, post
from redis_state import stored
from repos import sequence_online


@pytest.mark.parametrize("values", multi_view_repo.BAD.values(), ids=list(multi_view_repo.BAD))
def test_a_push_bad_for_one_view_writes_no_view(make_store, tmp_path, redis_client, values):
    store = make_store(multi_view_repo.objects(tmp_path / "data_files"))
    with pytest.raises((SequenceInputError, ValueError, TypeError)):
        store.push("events_push", multi_view_repo.frame(**values))
    assert stored(redis_client) == 0
    store.push("events_push", multi_view_repo.frame(small=1))  # a good push still writes every view
    assert sequence_key_count(redis_client) == 2


@pytest.mark.parametrize("values", multi_view_repo.BAD.values(), ids=list(multi_view_repo.BAD))
def test_an_async_push_bad_for_one_view_writes_no_view(make_store, tmp_path, redis_client, values):
    store = make_store(multi_view_repo.objects(tmp_path / "data_files"))
    with pytest.raises((SequenceInputError, ValueError, TypeError)):
        asyncio.run(store.push_async("events_push", multi_view_repo.frame(**values)))
    assert stored(redis_client) == 0


def test_an_http_push_bad_for_one_view_writes_no_view(tmp_path: Path, redis_server, redis_client):
    repo = tmp_path / "repo"
    env = module_repo(repo, "multi_view_repo", "multi_http", sequence_online(redis_server.connection_string))
    body = multi_view_repo.frame(small=2**40)
    df = {c: [v.isoformat() if hasattr(v, "isoformat") else v for v in body[c].tolist()] for c in body.columns}
    with feast_serve(repo, env=env) as port:
        with pytest.raises(urllib.error.HTTPError):
            post(port, "/push", {"push_source_name": "events_push", "df": df, "to": "online"})
    assert stored(redis_client) == 0
