"""One push source feeding two sequence views and a regular view, for the multi-view push tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import List

import pandas as pd
from feast import FeatureView, Field
from feast.types import Int32, Int64, String

from feast_sequence import SequenceFeatureView

from repos import push_source, user


def objects(data_dir: Path) -> List:
    push = push_source("events", data_dir, {"user_id": "int64", "item": "string", "small": "int32", "total": "int64"})
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
    push = push_source("mapped", data_dir, {"uid": "int64", "item": "string"}, field_mapping={"uid": "user_id"})
    items = SequenceFeatureView(
        name="mapped_items", entities=[user], source=push, schema=[Field(name="item", dtype=String)], max_length=5
    )
    last = FeatureView(
        name="mapped_last", entities=[user], source=push, schema=[Field(name="item", dtype=String)], ttl=timedelta(0)
    )
    return [user, items, last]


#: Frame values bad for one view of the push source only.
BAD = {
    "bad only for a sequence view": dict(small=2**40),
    "bad only for the regular view": dict(small=1, total="many"),
}
