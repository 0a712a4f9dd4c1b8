"""One push source feeding two sequence views and a regular view, for the multi-view push tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import List

import pandas as pd
from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Int32, Int64, String

from feast_sequence import SequenceFeatureView

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)


def objects(data_dir: Path) -> List:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "events.parquet"
    pd.DataFrame(
        {
            "user_id": pd.Series(dtype="int64"),
            "item": pd.Series(dtype="string"),
            "small": pd.Series(dtype="int32"),
            "total": pd.Series(dtype="int64"),
            "ts": pd.Series(dtype="datetime64[us, UTC]"),
        }
    ).to_parquet(path)
    push = PushSource(
        name="events_push", batch_source=FileSource(name="events_src", path=str(path), timestamp_field="ts")
    )
    items = SequenceFeatureView(
        name="items", entities=[user], source=push, schema=[Field(name="item", dtype=String)], max_length=5
    )
    smalls = SequenceFeatureView(
        name="smalls",
        entities=[user],
        source=push,
        schema=[Field(name="item", dtype=String), Field(name="small", dtype=Int32)],
        max_length=5,
    )
    totals = FeatureView(
        name="totals",
        entities=[user],
        source=push,
        schema=[Field(name="total", dtype=Int64)],
        ttl=timedelta(0),
    )
    return [user, items, smalls, totals]


def frame(small: int, total: object = 1) -> pd.DataFrame:
    """One event; ``small`` out of Int32's range is bad only for the 'smalls' view, and a
    non-number ``total`` only for the regular 'totals' view."""
    return pd.DataFrame(
        {
            "user_id": [1],
            "item": ["a"],
            "small": [small],
            "total": [total],
            "ts": [pd.Timestamp.now(tz="UTC")],
        }
    )


def mapped_objects(data_dir: Path) -> List:
    """A push source whose batch source maps its 'uid' column to the join key, feeding a sequence view
    and a regular view (field mappings are applied per view by the provider, as Feast does)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "mapped.parquet"
    pd.DataFrame(
        {
            "uid": pd.Series(dtype="int64"),
            "item": pd.Series(dtype="string"),
            "ts": pd.Series(dtype="datetime64[us, UTC]"),
        }
    ).to_parquet(path)
    push = PushSource(
        name="mapped_push",
        batch_source=FileSource(
            name="mapped_src", path=str(path), timestamp_field="ts", field_mapping={"uid": "user_id"}
        ),
    )
    items = SequenceFeatureView(
        name="mapped_items", entities=[user], source=push, schema=[Field(name="item", dtype=String)], max_length=5
    )
    last = FeatureView(
        name="mapped_last", entities=[user], source=push, schema=[Field(name="item", dtype=String)], ttl=timedelta(0)
    )
    return [user, items, last]
