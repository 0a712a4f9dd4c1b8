"""A small repository covering every kind of sequence view, for the store's tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, List

import numpy as np
import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, ValueType
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Array, Bool, Float64, Int32, Int64, String

from feast_sequence import SequenceFeatureView

from repos import push_source, sequence_views, user

EVENT_COLUMNS = {
    "user_id": "int64",
    "item": "string",
    "n": "int32",
    "price": "float64",
    "flag": "bool",
    "ts": "datetime64[us, UTC]",
}

session = Entity(name="session", join_keys=["session_id"], value_type=ValueType.STRING)


def objects(data_dir: Path) -> List:
    clicks_push = push_source("clicks", data_dir, EVENT_COLUMNS)
    pages_push = push_source("pages", data_dir, {"user_id": "int64", "session_id": "string", "page": "string"})
    profile_push = push_source("profile", data_dir, {"user_id": "int64", "scores": "object"})
    fields = [
        Field(name="item", dtype=String),
        Field(name="n", dtype=Int32),
        Field(name="price", dtype=Float64),
        Field(name="flag", dtype=Bool),
    ]
    clicks, clicks_dedup, clicks_ttl = sequence_views(
        {"clicks": {}, "clicks_dedup": {"dedup_by": ["item"]}, "clicks_ttl": {"ttl": timedelta(hours=1)}},
        entities=[user],
        source=clicks_push,
        schema=fields,
        max_length=5,
    )
    pages = SequenceFeatureView(
        name="pages",
        entities=[user, session],
        source=pages_push,
        schema=[Field(name="page", dtype=String)],
        max_length=3,
    )
    profile = FeatureView(
        name="profile",
        entities=[user],
        source=profile_push,
        schema=[Field(name="scores", dtype=Array(Int64))],
        ttl=timedelta(0),
    )
    service = FeatureService(name="click_service", features=[clicks[["item", "n"]], profile])
    return [user, session, clicks, clicks_dedup, clicks_ttl, pages, profile, service]


def events(rows: List[tuple]) -> pd.DataFrame:
    """(user_id, item, n, price, flag, ts) tuples as a pushable DataFrame."""
    df = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df


def click_records(frames: List[pd.DataFrame]) -> List[dict]:
    """Pushed click events as the reference implementation's records."""
    return [
        {
            "entity": int(r.user_id),
            "item": r.item,
            "n": int(r.n),
            "price": float(r.price),
            "flag": bool(r.flag),
            "timestamp_us": pd.Timestamp(r.ts).value // 1000,
        }
        for frame in frames
        for r in frame.itertuples()
    ]


def assert_clicks_match_reference(store, frames: List[pd.DataFrame], users: int) -> None:
    """Both click views serve, for users 0..users-1, exactly what the reference computes."""
    from feast_sequence import sequence_settings

    from reference import reference_sequences

    records = click_records(frames)
    for view in ("clicks", "clicks_dedup"):
        reference = reference_sequences(sequence_settings(store.get_feature_view(view)), records)
        served = store.get_online_features(
            features=[f"{view}:item", f"{view}:n"], entity_rows=[{"user_id": u} for u in range(users)]
        ).to_dict()
        for u in range(users):
            got = list(zip(served["item"][u], served["n"][u]))
            assert got == [(e["item"], e["n"]) for e in reference.get(u, [])], (view, u)


def random_clicks(
    rng: np.random.Generator,
    size: int,
    users: int,
    items: int,
    most_n: int,
    prices: List[float],
    first: Any,
    seconds: int,
) -> pd.DataFrame:
    """``size`` random click events: users 0..users-1, items i0..i(items-1), n in 0..most_n-1, a price
    of ``prices``, a random flag, timestamps ``first`` plus 0..seconds-1 s (repeats, out of order)."""
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, users, size),
            "item": [f"i{k}" for k in rng.integers(0, items, size)],
            "n": rng.integers(0, most_n, size).astype("int32"),
            "price": rng.choice(prices, size),
            "flag": rng.random(size) < 0.5,
            "ts": pd.Timestamp(first) + pd.to_timedelta(rng.integers(0, seconds, size), unit="s"),
        }
    )


#: When the random click batches start.
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def batches(count: int, size: int, seed: int) -> List[pd.DataFrame]:
    """``count`` frames of ``size`` random clicks of 20 users, from T0."""
    rng = np.random.default_rng(seed)
    return [random_clicks(rng, size, 20, 15, 5, [1.0, 2.0], T0, 60) for _ in range(count)]


def proto_rows(frame: pd.DataFrame) -> list:
    """The frame as Feast's ``online_write_batch`` rows (what materialization hands a store)."""
    return [
        (
            EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(int64_val=int(r.user_id))]),
            {
                "item": ValueProto(string_val=r.item),
                "n": ValueProto(int32_val=int(r.n)),
                "price": ValueProto(double_val=float(r.price)),
                "flag": ValueProto(bool_val=bool(r.flag)),
            },
            pd.Timestamp(r.ts).to_pydatetime(),
            None,
        )
        for r in frame.itertuples()
    ]
