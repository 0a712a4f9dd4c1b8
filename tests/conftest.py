"""Shared fixtures: a private redis-server for the session, throwaway Feast repositories."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pandas as pd
import pytest
from feast import FeatureStore

from feast_sequence import MAX_LENGTH_CAP, is_sequence_view, sequence_settings
from feast_sequence.examples.retail import RetailEvents, load_events, write_repo_data
from feast_sequence.feast_internals import store_provider
from feast_sequence.storage import blocks, compaction
from feast_sequence.storage.keys import levels_key, read_keys, sequence_keys_of, zset_key_of
from feast_sequence.storage.scripts import READ
from feast_sequence.testing.local_redis import LocalRedis

import serving_repo
from repos import applied_store, feast_apply, sequence_online
from sample_repo import objects

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RAW_RETAIL = PROJECT_ROOT / "data/online-retail-ii/online_retail_ii_2009-2010.parquet"


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Remember on the test item whether it failed, for fixtures that keep logs of failed tests."""
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config, specs: Any) -> None:
    """Under `pytest -n`, before the workers start: let each make its own Prometheus multiprocess
    directory. Importing Feast (this file does) set one in this process's environment, which the
    workers would inherit, and then each would read the other's counters into its own."""
    for name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
        os.environ.pop(name, None)


def pytest_configure(config: pytest.Config) -> None:
    """In a pytest-xdist worker, give ``__main__`` (execnet's ``python -c``) a module spec, as
    ``python -m`` would. Without one, pyspark.sql.connect (which Great Expectations imports) takes
    the process for a doctest run and calls sys.exit(0) when grpc is absent. A spawned
    multiprocessing child then re-imports no main module, as before."""
    main = sys.modules["__main__"]
    if "PYTEST_XDIST_WORKER" in os.environ and main.__spec__ is None and not hasattr(main, "__file__"):
        main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)


#: The longest test files (minutes each: Spark standalone, streaming jobs, offline jobs), run first:
#: under `make test` (one file per process at a time, next file in collection order) they then
#: overlap with the many short files, instead of leaving one process running them at the end.
LONGEST_FIRST = ("test_spark_cluster.py", "test_streaming.py", "test_jobs.py", "test_training_parity.py")


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """The LONGEST_FIRST files first; all other tests keep their order (the sort is stable)."""
    items.sort(key=lambda item: LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST else 99)


def has_failed(node: pytest.Item) -> bool:
    """Whether the test (its set-up or call) failed: read in a fixture's teardown."""
    return node.stash.get(_FAILED, False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    with LocalRedis() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: LocalRedis):
    client = redis_server.client()
    client.flushall()
    return client


def store_on(tmp_path: Path, connection: str, **online: Any) -> FeatureStore:
    """A new repository on ``connection`` (a Redis of the test's own), with sample_repo applied."""
    repo = tmp_path / uuid.uuid4().hex[:8]
    return applied_store(repo, "p" + repo.name, sequence_online(connection, **online), objects(repo / "events"))


@pytest.fixture
def make_store(tmp_path: Path, redis_client, redis_server: LocalRedis) -> Callable[..., FeatureStore]:
    """Build a FeatureStore in a temporary repository and apply the given objects to it."""

    def make(objects: List, project: str = "", name: str = "repo") -> FeatureStore:
        project = project or "p" + uuid.uuid4().hex[:8]
        return applied_store(tmp_path / name, project, sequence_online(redis_server.connection_string), objects)

    return make


@pytest.fixture(scope="session")
def retail_events() -> RetailEvents:
    return load_events(RAW_RETAIL)


@pytest.fixture(scope="session")
def retail_repo(tmp_path_factory, retail_events: RetailEvents, redis_server: LocalRedis) -> Path:
    """A copy of feature_repo/ with its data, applied once with the real `feast apply` CLI."""
    repo = tmp_path_factory.mktemp("retail") / "feature_repo"
    shutil.copytree(PROJECT_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    write_repo_data(retail_events, repo / "data")
    apply_repo(repo, redis_server)
    return repo


def apply_repo(repo: Path, redis_server: LocalRedis) -> None:
    """`feast apply` on ``repo``, its ${FEAST_SEQUENCE_REDIS} set to ``redis_server``."""
    feast_apply(repo, {"FEAST_SEQUENCE_REDIS": redis_server.connection_string})


@pytest.fixture
def retail_store(retail_repo: Path, redis_client, redis_server: LocalRedis, monkeypatch) -> FeatureStore:
    monkeypatch.setenv("FEAST_SEQUENCE_REDIS", redis_server.connection_string)
    return FeatureStore(repo_path=str(retail_repo))


def dump_all(client) -> Dict[bytes, Tuple[int, bytes]]:
    """Every key of Redis as DUMP gives it, with its time to live (ms, 0 for none): ``restore_all``
    puts the same bytes back, for fixtures that pay for a state once and give each test a copy."""
    keys = list(client.scan_iter(count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
        pipe.dump(key)
    replies = pipe.execute()
    return {key: (max(replies[2 * i], 0), replies[2 * i + 1]) for i, key in enumerate(keys)}


def restore_all(client, keys: Dict[bytes, Tuple[int, bytes]]) -> None:
    """Put back what ``dump_all`` took (into a flushed Redis: RESTORE refuses an existing key)."""
    pipe = client.pipeline(transaction=False)
    for key, (ttl_ms, value) in keys.items():
        pipe.restore(key, ttl_ms, value)
    pipe.execute()


@pytest.fixture(scope="session")
def retail_replayed_keys(retail_repo: Path, retail_events: RetailEvents, redis_server: LocalRedis):
    """What a replay of all the retail purchases and returns leaves in an empty Redis (``dump_all``),
    replayed once a session: replaying takes 15-40 s, restoring it well under one."""
    client = redis_server.client()
    client.flushall()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEAST_SEQUENCE_REDIS", redis_server.connection_string)
        store = FeatureStore(repo_path=str(retail_repo))
        replay(store, retail_events.purchases, "purchase_push")
        replay(store, retail_events.returns, "return_push")
    keys = dump_all(client)
    client.flushall()
    return keys


@pytest.fixture
def retail_replayed(retail_store: FeatureStore, retail_replayed_keys, redis_client) -> FeatureStore:
    """``retail_store`` holding every retail purchase and return, as ``replay`` leaves them."""
    restore_all(redis_client, retail_replayed_keys)
    return retail_store


def sequence_key_count(client) -> int:
    """How many sequence keys (sorted sets and identity hashes) Redis holds; the per-project record
    of stored definitions is not one."""
    return sum(1 for _ in client.scan_iter(match=b"fsq:*:{*", count=1000))


def redis_state(client, store: Any = None) -> dict:
    """Every stored sequence (members newest first, its compacted block and tail merged), to compare
    whole store states whatever was compacted when. With ``store``, as its views serve them (their
    max_length); without, everything stored (to compare a replica with its master)."""
    views = {}
    if store is not None:
        for view in store.list_feature_views():
            if is_sequence_view(view):
                settings = sequence_settings(view)
                views[view.name.encode()] = (settings.max_length, len(settings.dedup_by))
    state = {}
    for key in sorted({zset_key_of(k) for k in client.scan_iter(b"fsq:*:{*")}):
        keys = sequence_keys_of(key)
        limit, fields = views.get(key.split(b":")[2], (MAX_LENGTH_CAP, None))
        reply = client.eval(READ.source, 4, *read_keys(keys), "-inf", limit)
        state[key] = compaction.served(reply, _identity_fields(client, keys) if fields is None else fields).members()
    return state


def _identity_fields(client, keys) -> int:
    """How many dedup_by fields a stored sequence's identities have, read from the sequence itself
    (its identity hash, else its block): tests flush Redis, so the stored definitions may be gone."""
    identity = client.hrandfield(keys[1])
    if identity is None:
        block = blocks.decode(client.get(keys[2]) or next(iter(client.hvals(levels_key(keys))), None))
        if block is None or not block.identity_lengths[0]:
            return 0
        identity = block.events().identities()[0]
    return next(n for n in range(1, 64) if blocks.IdentityLength(n)(identity) == len(identity))


def replay(store, events, source: str, chunk: int = 50_000, seed: int = 3) -> None:
    """Push ``events`` shuffled, in chunks, then wait for the compactions the pushes left to the
    store's worker: tests that read or damage raw keys next must not race one."""
    shuffled = events.sample(frac=1.0, random_state=seed)
    for start in range(0, len(shuffled), chunk):
        store.push(source, shuffled.iloc[start : start + chunk])
    store_provider(store).online_store.drain_compactions(timeout_seconds=60)


@pytest.fixture
def served(tmp_path: Path, redis_server, redis_client):
    """The serving repository applied, its items and two seeds of recent clicks pushed."""
    store = serving_repo.serving_store(tmp_path / "repo", redis_server, "serving")
    store.apply(serving_repo.objects(tmp_path / "repo" / "data"))
    items = serving_repo.item_rows(30, serving_repo.NOW - pd.Timedelta(days=90))  # items i29..i39 have no row
    store.push("items_push", items)  # before the clicks: index-time enrichment looks items up at push
    frames = [serving_repo.recent_clicks(seed) for seed in (1, 2)]
    for frame in frames:
        store.push("clicks_push", frame)
    return store, pd.concat(frames), items
