"""The integrity tests' repository (test_block_integrity, test_verify): a plain and a dedup_by view
of clicks on one push source, two use cases of the plain one (one fail-closed), and their events."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from feast import Entity, Field, FileSource, PushSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Int32, String

from feast_sequence import SequenceFeatureView, SequenceUseCase

T0 = pd.Timestamp("2026-01-01", tz="UTC")
EVENTS = 150


def frame(users, events=EVENTS):
    rows = [(u, f"item{i % 40}", i, T0 + timedelta(seconds=i)) for u in users for i in range(events)]
    return pd.DataFrame(rows, columns=["user_id", "item", "n", "ts"])


def views(data_dir):
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(path=str(data_dir / "clicks.parquet"), file_format=ParquetFormat(), timestamp_field="ts")
    push = PushSource(name="clicks_push", batch_source=source)
    common = dict(entities=[user], source=push, schema=[Field(name="item", dtype=String), Field(name="n", dtype=Int32)])
    plain = SequenceFeatureView(name="plain", max_length=1000, **common)
    dedup = SequenceFeatureView(name="dedup", max_length=1000, dedup_by=["item"], **common)
    strict = SequenceUseCase(name="strict", features=[plain[["n"]]], fail_closed=True)
    lenient = SequenceUseCase(name="lenient", features=[plain[["n"]]])
    return [user, push, plain, dedup, strict, lenient]
