"""The serving-time enrichment cache: staleness and memory bounds, metrics, and off = today's serving."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from feast.data_source import PushMode
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from feast_sequence import (
    EnrichmentCache,
    SequenceDefinitionError,
    SequenceSpec,
    SequenceUseCase,
    enrich,
    feast_internals,
)
from feast_sequence.definitions.enrichment import Enrichment
from feast_sequence.serving.enrichment_cache import CachedLookup, EnrichmentCaches

import serving_repo
from serving_repo import NOW, user_rows

TTL = 60.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _sample(name: str, labels: dict) -> float:
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # what `feast serve --metrics` exposes
    return registry.get_sample_value(name, labels) or 0.0


# --- the cache on its own -----------------------------------------------------------------------


def _lookup(ttl: float = 10.0, entries: int = 100) -> CachedLookup:
    return CachedLookup("unit_items", EnrichmentCache(ttl_seconds=ttl, max_entries=entries), Clock())


def test_a_value_expires_ttl_seconds_after_its_lookup_was_sent():
    cache = _lookup(ttl=10)
    cache.clock.now = 100.0
    cache.put(99.0, ["a", "b"], {"a": ("A",)})  # sent at 99, answered at 100; "b" has no value
    cache.clock.now = 108.99
    assert cache.split(["a", "b", "c"]) == ({"a": ("A",), "b": None}, ["c"])
    cache.clock.now = 109.0  # 10 s after the lookup was sent, not after it was stored
    assert cache.split(["a", "b"]) == ({}, ["a", "b"])


def test_a_lookup_that_outlasted_the_ttl_is_not_cached():
    cache = _lookup(ttl=1)
    cache.clock.now = 5.0
    cache.put(3.0, ["a"], {"a": ("A",)})
    assert len(cache) == 0 and cache.split(["a"]) == ({}, ["a"])


def test_memory_is_bounded_by_max_entries_evicting_the_oldest_generation():
    cache = _lookup(ttl=100, entries=4)  # two generations of at most 2 keys
    labels = {"enrichment": "unit_items", "reason": "size"}
    before = _sample("feast_sequence_enrichment_cache_evictions_total", labels)
    cache.clock.now = 1.0
    cache.put(1.0, ["a", "b", "c"], {"a": (1,), "b": (2,), "c": (3,)})  # fills one generation, starts another
    assert len(cache) == 3 and cache.split(["a", "b", "c"]) == ({"a": (1,), "b": (2,), "c": (3,)}, [])
    cache.clock.now = 2.0
    cache.put(2.0, ["d", "e"], {"d": (4,)})  # "d" fills the second; "e" starts a third: the first goes
    assert len(cache) == 3
    assert cache.split(["a", "b", "c", "d", "e"]) == ({"c": (3,), "d": (4,), "e": None}, ["a", "b"])
    assert _sample("feast_sequence_enrichment_cache_evictions_total", labels) - before == 2


def test_a_lookup_sent_before_the_newest_generation_started_is_not_cached():
    """An async request that sent its lookup early must not put old values in a younger generation,
    where they would be served past their bound."""
    cache = _lookup(ttl=10)
    cache.clock.now = 6.0
    cache.put(5.0, ["new"], {"new": (1,)})  # the generation starts at 5
    cache.put(4.0, ["old"], {"old": (0,)})  # sent at 4: would be served until 15, 11 s after its read
    assert cache.split(["new", "old"]) == ({"new": (1,)}, ["old"])


def test_caches_belong_to_their_store_and_to_their_settings():
    lookup = Enrichment("items", "item_id", serving_repo.item.value_type, "", (("title", 2),))
    small, large = EnrichmentCache(10, 5), EnrichmentCache(10, 50)
    one, two = EnrichmentCaches(), EnrichmentCaches()
    assert one.lookup("p", lookup, small) is one.lookup("p", lookup, small)
    assert one.lookup("p", lookup, small) is not two.lookup("p", lookup, small)
    assert one.lookup("p", lookup, small) is not one.lookup("p", lookup, large)
    assert one.lookup("p", lookup, small) is not one.lookup("q", lookup, small)


@pytest.mark.parametrize(
    "ttl, entries, message",
    [(0, 10, "ttl_seconds=0 is invalid"), (float("inf"), 10, "ttl_seconds=inf"), (5, 0, "max_entries=0 is invalid")],
)
def test_bad_cache_settings_are_refused(ttl, entries, message):
    with pytest.raises(SequenceDefinitionError, match=message):
        EnrichmentCache(ttl_seconds=ttl, max_entries=entries)


# --- served through the store -------------------------------------------------------------------


def _objects(store):
    return {o.name: o for o in serving_repo.objects(store.repo_path / "data")}


def _cached_copy(store, name: str, cache: EnrichmentCache) -> SequenceUseCase:
    """``ranking_serving`` with its enrichment cached."""
    objects = _objects(store)
    by_item = enrich(objects["items"], on="item_id", features=["title", "cost"], cache=cache)
    return SequenceUseCase(
        name=name,
        features=[objects["clicks"][["item_id", "kind", "n", "ts"]]],
        sequences={"clicks": SequenceSpec(**serving_repo.RANKING, enrich=[by_item])},
        output="padded",
    )


def _titles(response: dict) -> set:
    """The titles of real events whose item has a row (others are enrichment misses: "")."""
    rows = zip(response["title"], response["clicks__mask"])
    return {t for row, mask in rows for t, real in zip(row, mask) if real and t}


def _serve(store, name: str) -> dict:
    return store.get_online_features(features=store.get_feature_service(name), entity_rows=user_rows()).to_dict()


@pytest.fixture
def cached(served):  # noqa: F811  (the fixture imported above)
    store, clicks, items = served
    store.served_clicks = [clicks.reset_index(drop=True)]
    store.apply([_cached_copy(store, "ranking_cached", EnrichmentCache(ttl_seconds=TTL, max_entries=1000))])
    online = feast_internals.store_provider(store).online_store
    # The compactions the fixture's pushes left to the store's worker, done now: their script calls
    # would otherwise land in the counts of the requests a test measures (ci6 failure).
    online.drain_compactions(timeout_seconds=60)
    clock = Clock()
    online.enrichment_caches.clock = clock
    return store, online, clock, items


def test_a_cached_value_is_never_older_than_the_ttl(cached):
    store, online, clock, items = cached
    before = _serve(store, "ranking_cached")
    assert before == _serve(store, "ranking_serving")  # cold cache: as without one
    assert _titles(before) and all(t.startswith("title ") for t in _titles(before))
    clock.now = 1001.0
    newer = items.assign(title="new " + items["title"], ts=items["ts"] + pd.Timedelta(seconds=1))
    store.push("items_push", newer, to=PushMode.ONLINE)  # Feast's store keeps only newer rows

    assert all(t.startswith("new title ") for t in _titles(_serve(store, "ranking_serving")))  # no cache: at once
    sent = 1000.0  # the clock's start: when the first request sent its lookup
    clock.now = sent + TTL - 0.25  # just under the bound
    assert _titles(_serve(store, "ranking_cached")) == _titles(before)  # served from the cache
    clock.now = sent + TTL  # the bound
    after = _serve(store, "ranking_cached")
    assert after == _serve(store, "ranking_serving")
    assert all(t.startswith("new title ") for t in _titles(after))


def test_with_the_cache_off_nothing_is_cached(served):  # noqa: F811
    store, _, items = served
    online = feast_internals.store_provider(store).online_store
    for name in ("ranking", "ranking_serving", "ranking_indexed", "history_jagged"):
        _serve(store, name)
    assert len(online.enrichment_caches) == 0
    newer = items.assign(cost=items["cost"] + 1000, ts=items["ts"] + pd.Timedelta(seconds=1))
    store.push("items_push", newer, to=PushMode.ONLINE)
    costs = _serve(store, "ranking_serving")["cost"]
    assert any(c >= 1000 for row in costs for c in row) and all(c >= 1000 or c == 0 for row in costs for c in row)


def test_hits_and_misses_are_counted_and_a_warm_request_needs_no_lookup(cached, redis_client):
    store, _, _, _ = cached
    labels = {"enrichment": "items"}
    hits = _sample("feast_sequence_enrichment_cache_hits_total", labels)
    misses = _sample("feast_sequence_enrichment_cache_misses_total", labels)
    scripts, lookups = _script_calls(redis_client), _lookups(redis_client)
    cold = _serve(store, "ranking_cached")
    cold_scripts = _script_calls(redis_client) - scripts  # the sequence reads, and the lookup
    assert _lookups(redis_client) > lookups
    distinct = len({i for row, m in zip(cold["item_id"], cold["clicks__mask"]) for i, r in zip(row, m) if r})
    assert _sample("feast_sequence_enrichment_cache_misses_total", labels) - misses == distinct
    scripts, lookups = _script_calls(redis_client), _lookups(redis_client)
    assert _serve(store, "ranking_cached") == cold
    assert _lookups(redis_client) == lookups  # warm: no lookup at all
    assert _script_calls(redis_client) - scripts == cold_scripts - 1  # one MULTI_HMGET for every distinct item
    assert _sample("feast_sequence_enrichment_cache_hits_total", labels) - hits == distinct
    assert _sample("feast_sequence_enrichment_cache_misses_total", labels) - misses == distinct


def _script_calls(client) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def _lookups(client) -> int:
    """HMGETs, inside the lookup script or not: sequence reads make none."""
    return int(client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))


def test_a_small_cache_serves_the_same_values(served):  # noqa: F811
    store, _, _ = served
    store.apply([_cached_copy(store, "ranking_tiny_cache", EnrichmentCache(ttl_seconds=TTL, max_entries=3))])
    online = feast_internals.store_provider(store).online_store
    expected = _serve(store, "ranking_serving")
    for _ in range(3):
        assert _serve(store, "ranking_tiny_cache") == expected
    (cache,) = online.enrichment_caches._caches.values()
    assert len(cache) <= 3


def test_concurrent_async_requests_share_the_cache_safely(cached):
    store, online, _, _ = cached
    expected = _serve(store, "ranking_serving")
    online.enrichment_caches.clear()
    service = store.get_feature_service("ranking_cached")

    async def many():
        requests = [store.get_online_features_async(features=service, entity_rows=user_rows()) for _ in range(8)]
        return [r.to_dict() for r in await asyncio.gather(*requests)]

    assert all(result == expected for result in asyncio.run(many()))
    assert len(online.enrichment_caches) == 1


def test_training_data_ignores_the_cache(cached):
    """Training rows join items as of their timestamp, whatever the serving cache holds."""
    from feast_sequence import get_training_data

    store, _, _, items = cached
    for frame in store.served_clicks:
        store.push("clicks_push", frame, to=PushMode.OFFLINE)
    store.push("items_push", items, to=PushMode.OFFLINE)
    later = items.assign(title="later " + items["title"], ts=NOW + pd.Timedelta(days=1))
    store.push("items_push", later, to=PushMode.ONLINE_AND_OFFLINE)
    assert any(t.startswith("later ") for t in _titles(_serve(store, "ranking_cached")))  # cached now
    entity_df = pd.DataFrame({"user_id": range(4), "event_timestamp": NOW})
    training = get_training_data(store, entity_df, "ranking_cached").to_df()
    titles = {t for row in training["title"] for t in row if t}
    assert titles and not any(t.startswith("later ") for t in titles)
