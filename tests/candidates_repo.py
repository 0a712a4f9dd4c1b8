"""A repository of purchases with a category, and use cases that take each row's candidate from the
request (``FromRequest``): for the candidate tests, over HTTP too (``objects``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import pandas as pd
from feast import Field
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination
from feast.types import Float64, Int64, String

from feast_sequence import FromRequest, Limits, SequenceFeatureView, SequenceSpec, SequenceUseCase, Where

from repos import push_source, user

PURCHASE_COLUMNS = {"user_id": "int64", "item_id": "string", "category": "string", "shop": "int64", "price": "float64"}
CATEGORIES = [f"c{i}" for i in range(6)]
SHOPS = [1, 2, 3]
MAX_LENGTH = 300


#: A row's events of the category its request names (its ``candidate_category`` value).
SAME_CATEGORY = Where("category", "==", FromRequest("candidate_category"))


def purchases_view(data_dir: Path, max_length: int = MAX_LENGTH) -> SequenceFeatureView:
    """The users' purchases (PURCHASE_COLUMNS), pushed through 'purchases_push'."""
    return SequenceFeatureView(
        name="purchases",
        entities=[user],
        source=push_source("purchases", data_dir, PURCHASE_COLUMNS),
        schema=[
            Field(name="item_id", dtype=String),
            Field(name="category", dtype=String),
            Field(name="shop", dtype=Int64),
            Field(name="price", dtype=Float64),
        ],
        max_length=max_length,
    )


def objects(data_dir: Path, max_length: int = MAX_LENGTH) -> List[Any]:
    purchases = purchases_view(data_dir, max_length)
    same_category = SAME_CATEGORY
    features = purchases[["item_id", "category", "ts"]]
    return [
        user,
        purchases,
        SequenceUseCase(
            name="like_candidate",
            features=[features],
            sequences={"purchases": SequenceSpec(length=5, where=[same_category])},
            limits=Limits(max_entities=200),
        ),
        SequenceUseCase(
            name="like_candidate_padded",
            features=[purchases[["item_id", "price", "ts"]]],
            sequences={
                "purchases": SequenceSpec(
                    length=4,
                    where=[Where("price", ">", 10.0), same_category],
                    order="oldest_first",
                    padding="left",
                    age_field="age_s",
                )
            },
            output="padded",
        ),
        SequenceUseCase(
            name="in_shops_jagged",
            features=[purchases[["item_id", "shop"]]],
            sequences={"purchases": SequenceSpec(length=3, where=[Where("shop", "in", FromRequest("shops"))])},
            output="jagged",
        ),
        *(
            SequenceUseCase(
                name=f"{name}_logged",
                features=[purchases[["item_id", "ts"]]],
                sequences={"purchases": SequenceSpec(length=5, where=[condition])},
                logging_config=LoggingConfig(destination=FileLoggingDestination(path=str(data_dir / "logs" / name))),
            )
            for name, condition in (
                ("like_candidate", same_category),
                ("in_shops", Where("shop", "in", FromRequest("shops"))),
            )
        ),
    ]


def purchases(
    users: Sequence[int], per_user: int, now: pd.Timestamp, seed: int, categories: Sequence[str] = CATEGORIES
) -> pd.DataFrame:
    """``per_user`` purchases of each user in random ``categories``, distinct times back from ``now`` (no ties)."""
    rng = np.random.default_rng(seed)
    rows: Dict[str, List[Any]] = {c: [] for c in ["user_id", "item_id", "category", "shop", "price", "ts"]}
    for u in users:
        rows["user_id"] += [u] * per_user
        rows["item_id"] += [f"i{u}_{k}" for k in range(per_user)]
        rows["category"] += rng.choice(list(categories), per_user).tolist()
        rows["shop"] += rng.choice(SHOPS, per_user).tolist()
        rows["price"] += np.round(rng.uniform(0, 30, per_user), 2).tolist()
        rows["ts"] += list(now.floor("s") - pd.to_timedelta(np.arange(1, per_user + 1) * 60 + u, unit="s"))
    return pd.DataFrame(rows).astype({"ts": "datetime64[us, UTC]"})


def expected(events: pd.DataFrame, user_id: int, keep: Any, length: int, max_length: int = MAX_LENGTH) -> pd.DataFrame:
    """The naive answer: the user's newest ``max_length`` events (as stored), those ``keep`` accepts,
    the newest ``length`` of them, newest first."""
    stored = events[events["user_id"] == user_id].sort_values("ts", ascending=False).head(max_length)
    kept = [bool(keep(event)) for _, event in stored.iterrows()]
    return stored[np.array(kept, dtype=bool)].head(length)
