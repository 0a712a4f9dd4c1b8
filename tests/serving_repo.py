"""A repository with use cases over one click stream, for the serving layer's tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import List

import numpy as np
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int32, Int64, String

from feast_sequence import (
    EnrichmentCache,
    Limits,
    SequenceFeatureView,
    SequenceSpec,
    SequenceUseCase,
    Where,
    enrich,
)

from repos import REGISTRY, push_source, sequence_online, sequence_views, user, write_repo

item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)

CLICK_COLUMNS = {
    "user_id": "int64",
    "item_id": "string",
    "kind": "string",
    "n": "int32",
    "ts": "datetime64[us, UTC]",
}
ITEM_COLUMNS = {"item_id": "string", "title": "string", "cost": "float64", "ts": "datetime64[us, UTC]"}

RANKING = dict(
    length=3,
    where=[Where("kind", "in", ["buy", "view"]), Where("n", ">", 0)],
    window=timedelta(days=30),
)


def objects(data_dir: Path, ranking_length: int = 3) -> List:
    clicks_push = push_source("clicks", data_dir, CLICK_COLUMNS)
    items = FeatureView(
        name="items",
        entities=[item],
        source=push_source("items", data_dir, ITEM_COLUMNS),
        schema=[
            Field(name="item_id", dtype=String),
            Field(name="title", dtype=String),
            Field(name="cost", dtype=Float64),
        ],
        ttl=timedelta(0),
    )
    by_item = enrich(items, on="item_id", features=["title", "cost"])
    fields = [
        Field(name="item_id", dtype=String),
        Field(name="kind", dtype=String),
        Field(name="n", dtype=Int32),
    ]
    clicks, clicks_indexed = sequence_views(
        {"clicks": {}, "clicks_indexed": {"enrich": [by_item]}},
        entities=[user],
        source=clicks_push,
        schema=fields,
        max_length=20,
        dedup_by=["item_id", "kind"],
    )

    @on_demand_feature_view(
        sources=[clicks[["n"]]],
        schema=[Field(name="clicked_cost", dtype=Float64), Field(name="clicks_seen", dtype=Int64)],
        mode="python",
    )
    def click_summary(inputs: dict) -> dict:
        """Over the shaped, enriched sequence: its total cost and length. Serving-time enriched fields
        are in ``inputs`` when serving; at `feast apply` Feast infers types from the declared sources
        only, hence ``get``."""
        costs = inputs.get("cost") or [[] for _ in inputs["n"]]
        return {
            "clicked_cost": [float(sum(c)) for c in costs],
            "clicks_seen": [len(n) for n in inputs["n"]],
        }

    spec = dict(RANKING, length=ranking_length)
    ranking = SequenceUseCase(
        name="ranking",
        features=[clicks[["item_id", "kind", "n", "ts"]], click_summary],
        sequences={"clicks": SequenceSpec(**spec, enrich=[by_item])},
        output="padded",
        limits=Limits(max_entities=50),
    )
    ranking_indexed = SequenceUseCase(
        name="ranking_indexed",
        features=[clicks_indexed[["item_id", "kind", "n", "ts"]]],
        sequences={"clicks_indexed": SequenceSpec(**spec, enrich=[by_item])},
        output="padded",
    )
    ranking_serving = SequenceUseCase(
        name="ranking_serving",
        features=[clicks[["item_id", "kind", "n", "ts"]]],
        sequences={"clicks": SequenceSpec(**spec, enrich=[by_item])},
        output="padded",
    )
    recent = recent_use_case(clicks)
    # Model-shaped: oldest first with the newest in the last slot (SASRec), ages, a cached join.
    cached_by_item = enrich(
        items, on="item_id", features=["title", "cost"], cache=EnrichmentCache(ttl_seconds=60, max_entries=1000)
    )
    sasrec = SequenceUseCase(
        name="ranking_sasrec",
        features=[clicks[["item_id", "n", "ts"]]],
        sequences={
            "clicks": SequenceSpec(
                **spec, enrich=[cached_by_item], order="oldest_first", padding="left", age_field="age_s"
            )
        },
        output="padded",
    )
    # Time-ordered jagged history with ages (HSTU-style, for a KeyedJaggedTensor).
    history = SequenceUseCase(
        name="history_jagged",
        features=[clicks[["item_id", "kind", "ts"]]],
        sequences={"clicks": SequenceSpec(length=5, order="oldest_first", age_field="age_s")},
        output="jagged",
    )
    return [
        user,
        item,
        items,
        clicks,
        clicks_indexed,
        click_summary,
        ranking,
        ranking_indexed,
        ranking_serving,
        recent,
        sasrec,
        history,
    ]


def recent_use_case(clicks_view: SequenceFeatureView, length: int = 2) -> SequenceUseCase:
    """The newest clicked items, jagged, at most 3 users per request (the tests change its length)."""
    return SequenceUseCase(
        name="recent",
        features=[clicks_view[["item_id"]]],
        sequences={"clicks": SequenceSpec(length=length)},
        output="jagged",
        limits=Limits(max_entities=3),
    )


def clicks(n: int, users: int, now: pd.Timestamp, seed: int, items: int = 40) -> pd.DataFrame:
    """Random clicks of the last 40 days (some outside the 30-day window), some repeated."""
    rng = np.random.default_rng(seed)
    ts = now - pd.to_timedelta(rng.integers(0, 40 * 86_400_000_000, n), unit="us")
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, users, n).astype("int64"),
            "item_id": [f"i{k}" for k in rng.integers(0, items, n)],
            "kind": rng.choice(["buy", "view", "cart"], n),
            "n": rng.integers(-1, 4, n).astype("int32"),
            "ts": pd.DatetimeIndex(ts).as_unit("us"),
        }
    )


def item_rows(items: int, ts: pd.Timestamp) -> pd.DataFrame:
    """Items i0..i(items-2) with a title and a cost; others are enrichment misses."""
    ids = [f"i{k}" for k in range(items - 1)]
    return pd.DataFrame(
        {
            "item_id": ids,
            "title": [f"title {i}" for i in ids],
            "cost": [1.5 * k for k in range(items - 1)],
            "ts": [ts] * len(ids),
        }
    )


# --- the serving tests' store, events and rows -------------------------------------------------

USERS = 12
NOW = pd.Timestamp.now(tz="UTC")


def serving_store(root: Path, redis_server, project: str, cache_ttl: int = 600) -> FeatureStore:
    """A store on the serving repository's configuration (not applied yet), its registry cached ``cache_ttl`` s."""
    registry = {"path": REGISTRY, "cache_ttl_seconds": cache_ttl}
    return FeatureStore(
        repo_path=str(write_repo(root, project, sequence_online(redis_server.connection_string), registry=registry))
    )


def recent_clicks(seed: int) -> pd.DataFrame:
    """Clicks, none within an hour of the 30-day window's edge (so the test cannot race the clock)."""
    frame = clicks(400, USERS - 2, NOW, seed)
    age = NOW - frame["ts"]
    return frame[(age - timedelta(days=30)).abs() > timedelta(hours=1)].reset_index(drop=True)


def user_rows(users: int = USERS) -> List[dict]:
    """Entity rows of the first ``users`` users."""
    return [{"user_id": u} for u in range(users)]
