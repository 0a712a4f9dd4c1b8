"""A small repository covering every kind of sequence view, for the store's tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import List

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Bool, Float64, Int32, Int64, String

from feast_sequence import SequenceFeatureView

EVENT_COLUMNS = {
    "user_id": "int64",
    "item": "string",
    "n": "int32",
    "price": "float64",
    "flag": "bool",
    "ts": "datetime64[us, UTC]",
}

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
session = Entity(name="session", join_keys=["session_id"], value_type=ValueType.STRING)


def objects(data_dir: Path) -> List:
    data_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({c: pd.Series(dtype=t) for c, t in EVENT_COLUMNS.items()}).to_parquet(data_dir / "clicks.parquet")
    pd.DataFrame(
        {
            "user_id": pd.Series(dtype="int64"),
            "session_id": pd.Series(dtype="string"),
            "page": pd.Series(dtype="string"),
            "ts": pd.Series(dtype="datetime64[us, UTC]"),
        }
    ).to_parquet(data_dir / "pages.parquet")
    pd.DataFrame(
        {
            "user_id": pd.Series(dtype="int64"),
            "scores": pd.Series(dtype="object"),
            "ts": pd.Series(dtype="datetime64[us, UTC]"),
        }
    ).to_parquet(data_dir / "profile.parquet")

    clicks_push = PushSource(
        name="clicks_push",
        batch_source=FileSource(name="clicks_src", path=str(data_dir / "clicks.parquet"), timestamp_field="ts"),
    )
    pages_push = PushSource(
        name="pages_push",
        batch_source=FileSource(name="pages_src", path=str(data_dir / "pages.parquet"), timestamp_field="ts"),
    )
    profile_push = PushSource(
        name="profile_push",
        batch_source=FileSource(name="profile_src", path=str(data_dir / "profile.parquet"), timestamp_field="ts"),
    )
    fields = [
        Field(name="item", dtype=String),
        Field(name="n", dtype=Int32),
        Field(name="price", dtype=Float64),
        Field(name="flag", dtype=Bool),
    ]
    clicks = SequenceFeatureView(name="clicks", entities=[user], source=clicks_push, schema=fields, max_length=5)
    clicks_dedup = SequenceFeatureView(
        name="clicks_dedup",
        entities=[user],
        source=clicks_push,
        schema=fields,
        max_length=5,
        dedup_by=["item"],
    )
    clicks_ttl = SequenceFeatureView(
        name="clicks_ttl",
        entities=[user],
        source=clicks_push,
        schema=fields,
        max_length=5,
        ttl=timedelta(hours=1),
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
