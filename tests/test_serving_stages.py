"""The serving stages one by one, without Redis: retrieve (commands and decode), filter, size,
enrich (the join), arrange and featurize (padding a response vector). Sequences are decoded from
members the real encoder wrote, in the shape the READ script returns them (no block: ``[false,
members newest first]``); the other stages take ``SequenceBatch``es built from plain lists."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Dict, List

import numpy as np
import pandas as pd
from feast import Entity, Field, FileSource, ValueType
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Float64, Int64, String

from feast_sequence import SequenceFeatureView, SequenceSpec, Where
from feast_sequence.definitions.enrichment import Enrichment
from feast_sequence.definitions.settings import sequence_settings
from feast_sequence.serving.arrange import oldest_first
from feast_sequence.serving.batch import SequenceBatch, as_array
from feast_sequence.serving.enrich import factorize_keys, join
from feast_sequence.serving.featurize import pad_response_vector
from feast_sequence.serving.filter import filter_events
from feast_sequence.serving.retrieve import decode_batch, newest_seconds, retrieve_commands
from feast_sequence.serving.size import first_n
from feast_sequence.storage.append import encode_frame
from feast_sequence.storage.entity_keys import entity_key_bytes_from_values

USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
VIEW = SequenceFeatureView(
    name="purchases",
    entities=[USER],
    source=FileSource(name="purchases_src", path="purchases.parquet", timestamp_field="ts"),
    schema=[Field(name="item", dtype=String), Field(name="price", dtype=Float64), Field(name="qty", dtype=Int64)],
    max_length=10,
    ttl=timedelta(days=1),
)
SETTINGS = sequence_settings(VIEW)
NOW_US = 1_700_000_000_000_000


def _key(user: int) -> Dict[str, ValueProto]:
    return {"user_id": ValueProto(int64_val=user)}


def _replies(frame: pd.DataFrame, users: List[int]) -> List[Any]:
    """READ's reply per user (no block), from the members ``encode_frame`` makes of ``frame``."""
    events = encode_frame(SETTINGS, frame)
    stored: Dict[bytes, List[Any]] = {}
    for key, score, member in zip(events.entity_keys, events.scores_us, events.members):
        stored.setdefault(key, []).append((score, member))
    return [
        [None, [m for _, m in sorted(stored.get(entity_key_bytes_from_values(_key(u)), []), reverse=True)]]
        for u in users
    ]


def _batch(lengths: List[int], **columns: Any) -> SequenceBatch:
    batch = SequenceBatch(np.array(lengths, dtype=np.int64))
    for name, (values, value_type) in columns.items():
        batch = batch.with_column(name, as_array(values, value_type), value_type)
    return batch


FRAME = pd.DataFrame(
    {
        "user_id": [7, 7, 8, 7],
        "item": ["a", "b", "z", "c"],
        "price": [1.5, 2.5, 9.0, 3.5],
        "qty": [1, 2, 3, 4],
        "ts": pd.to_datetime(
            [NOW_US - 40_000_000, NOW_US - 30_000_000, NOW_US - 20_000_000, NOW_US], unit="us", utc=True
        ),
    }
)


def test_retrieve_asks_redis_for_the_use_cases_length_unless_a_filter_must_choose_first():
    plain = retrieve_commands(SETTINGS, SequenceSpec(length=2), "proj", [_key(7)], NOW_US, {})
    filtered = retrieve_commands(
        SETTINGS, SequenceSpec(length=2, where=[Where("qty", ">", 1)]), "proj", [_key(7)], NOW_US, {}
    )
    assert plain[0][-1] == 2 and filtered[0][-1] == SETTINGS.max_length
    windowed = retrieve_commands(SETTINGS, SequenceSpec(window=timedelta(minutes=1)), "proj", [_key(7)], NOW_US, {})
    assert windowed[0][-2] == NOW_US - 60_000_000


def test_retrieve_decodes_the_replies_into_one_flat_batch_newest_first():
    users = [7, 9, 8]
    commands = retrieve_commands(SETTINGS, SequenceSpec(), "proj", [_key(u) for u in users], NOW_US, {})
    batch = decode_batch(SETTINGS, commands, _replies(FRAME, users), ["item", "qty"])
    assert batch.lengths.tolist() == [3, 0, 1]
    assert batch.row_lists("item") == [["c", "b", "a"], [], ["z"]]
    assert batch.columns["qty"].dtype == np.int64 and batch.columns["qty"].tolist() == [4, 2, 1, 3]
    assert "price" not in batch.columns  # only the fields asked for, and the timestamps
    seconds = [NOW_US // 1_000_000, (NOW_US - 30_000_000) // 1_000_000, (NOW_US - 40_000_000) // 1_000_000]
    assert batch.row_lists("ts")[0] == seconds
    assert newest_seconds(batch, "ts").tolist() == [NOW_US // 1_000_000, (NOW_US - 20_000_000) // 1_000_000]


def test_filters_combine_as_and():
    batch = _batch([3, 2], qty=([4, 2, 1, 3, 5], ValueType.INT64), item=(["c", "b", "a", "z", "y"], ValueType.STRING))
    kept = filter_events(batch, [Where("qty", ">=", 2), Where("item", "not in", ["b"])])
    assert kept.row_lists("item") == [["c"], ["z", "y"]]
    assert kept.lengths.tolist() == [1, 2]


def test_size_keeps_each_rows_newest_n_events():
    batch = _batch([3, 0, 1, 4], qty=([1, 2, 3, 4, 5, 6, 7, 8], ValueType.INT64))
    assert first_n(batch, 2).row_lists("qty") == [[1, 2], [], [4], [5, 6]]
    assert first_n(batch, None) is batch and first_n(batch, 4) is batch  # nothing to cut: the same batch


def test_the_enrichment_join_adds_each_keys_values_and_counts_the_events_without_one():
    enrichment = Enrichment(
        "items", "item_id", ValueType.STRING, "item", (("title", ValueType.STRING), ("stock", ValueType.INT64)), "item_"
    )
    batch = _batch([2, 2], item=(["a", "b", "a", "q"], ValueType.STRING))
    codes, keys = factorize_keys(batch, enrichment)
    assert keys == ["a", "b", "q"] and codes.tolist() == [0, 1, 0, 2]
    found = {"a": ("Apple", 3), "b": ("Bread", 0)}
    joined, misses = join(batch, enrichment, found, (codes, keys))
    assert misses == 1  # "q" has no row in the joined view
    assert joined.row_lists("item_title") == [["Apple", "Bread"], ["Apple", ""]]  # a miss gets the null default
    assert joined.row_lists("item_stock") == [[3, 0], [3, 0]]
    assert joined.types["item_stock"] == ValueType.INT64
    assert join(batch, enrichment, found)[0].row_lists("item_title") == joined.row_lists("item_title")


def test_arrange_then_pad_a_response_vector_to_the_use_cases_length():
    batch = oldest_first(_batch([3, 1, 0], qty=([3, 2, 1, 9], ValueType.INT64)))
    response = GetOnlineFeaturesResponse()
    vector = response.results.add()
    for row in batch.row_lists("qty"):
        vector.values.add().int64_list_val.val.extend(row)
    right = GetOnlineFeaturesResponse()
    right.results.add().CopyFrom(vector)
    assert pad_response_vector(vector, 4, 0, left=True) == [3, 1, 0]
    assert [list(v.int64_list_val.val) for v in vector.values] == [[0, 1, 2, 3], [0, 0, 0, 9], [0, 0, 0, 0]]
    pad_response_vector(right.results[0], 4, -1)
    assert [list(v.int64_list_val.val) for v in right.results[0].values] == [[1, 2, 3, -1], [9, -1, -1, -1], [-1] * 4]
