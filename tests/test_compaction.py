"""Compaction on a real Redis: the served sequences never change, whatever compacts when.

Real retail customers with thousands of events at max_length 1,000, replayed shuffled and with
duplicates through writers that compact, a compactor racing writers and readers, compactors killed
mid-way, data stored before blocks existed, and corrections of compacted sequences.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest
from feast import Entity, FileSource, PushSource, ValueType
from feast.data_format import ParquetFormat
from feast.field import Field
from feast.types import Float32, Int32, String
from old_blocks import old_format

from feast_sequence import SequenceFeatureView, sequence_settings
from feast_sequence.feast_internals import store_provider
from feast_sequence.offline.indexing import IndexTarget, write_frames
from feast_sequence.storage.conversion import datetime_to_us

from repos import applied_store, reopened, sequence_online
from retail_reference import FIELDS, pandas_reference

VIEWS = ("long", "long_dedup")


def long_views(data_dir):
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    batch = FileSource(
        path=str(data_dir / "events.parquet"), file_format=ParquetFormat(), timestamp_field="event_timestamp"
    )
    push = PushSource(name="events_push", batch_source=batch)
    schema = [
        Field(name="invoice", dtype=String),
        Field(name="item_id", dtype=String),
        Field(name="quantity", dtype=Int32),
        Field(name="unit_price", dtype=Float32),
    ]
    common = dict(entities=[customer], source=push, schema=schema, max_length=1000)
    return [
        customer,
        push,
        SequenceFeatureView(name="long", **common),
        SequenceFeatureView(name="long_dedup", dedup_by=["invoice", "item_id"], **common),
    ]


def long_store(tmp_path, redis_server, **online):
    repo = tmp_path / uuid.uuid4().hex[:8]
    return applied_store(
        repo, "p" + repo.name, sequence_online(redis_server.connection_string, **online), long_views(repo)
    )


@pytest.fixture(scope="module")
def heavy_customers(retail_events):
    """The retail customers with the most purchase lines (thousands each), and their events."""
    purchases = retail_events.purchases
    top = purchases["customer_id"].value_counts().head(6).index
    return purchases[purchases["customer_id"].isin(top)].reset_index(drop=True)


def served(store, view, customers):
    out = store.get_online_features(
        features=[f"{view}:{f}" for f in FIELDS], entity_rows=[{"customer_id": int(c)} for c in customers]
    ).to_dict()
    return {c: list(zip(*(out[f][i] for f in FIELDS))) for i, c in enumerate(customers)}


def expected(store, view, events, customers):
    reference = pandas_reference(sequence_settings(store.get_feature_view(view)), events)
    rows = {c: [] for c in customers}
    for r in reference.itertuples():
        rows[r.customer_id].append(
            (r.invoice, r.item_id, int(r.quantity), float(np.float32(r.unit_price)), r.event_timestamp.floor("s"))
        )
    return rows


def assert_served_equals_reference(store, events):
    customers = sorted(int(c) for c in events["customer_id"].unique())
    for view in VIEWS:
        got = served(store, view, customers)
        want = expected(store, view, events, customers)
        for c in customers:
            assert [(i, it, q, p, pd.Timestamp(t)) for i, it, q, p, t in got[c]] == want[c], f"{view} {c}"


def replay(store, events, seed, chunk=700):
    rng = np.random.default_rng(seed)
    duplicates = events.sample(frac=0.1, random_state=seed)
    shuffled = pd.concat([events, duplicates]).iloc[rng.permutation(len(events) + len(duplicates))]
    for start in range(0, len(shuffled), chunk):
        store.push("events_push", shuffled.iloc[start : start + chunk])
    store_provider(store).online_store.drain_compactions(timeout_seconds=60)  # what the pushes left to it


def block_count(client):
    return sum(1 for _ in client.scan_iter(match=b"fsq:*}:c"))


@pytest.mark.parametrize("compact_after", [0, 7, 64])
def test_retail_replay_at_max_length_1000_equals_the_reference(
    tmp_path, redis_server, redis_client, heavy_customers, compact_after
):
    store = long_store(tmp_path, redis_server, compact_after=compact_after)
    replay(store, heavy_customers, seed=compact_after)
    assert (block_count(redis_client) > 0) == (compact_after > 0)
    assert_served_equals_reference(store, heavy_customers)


def test_format_2_data_reads_the_same_and_the_compactor_converts_it_in_place(
    tmp_path, redis_server, redis_client, heavy_customers
):
    store = long_store(tmp_path, redis_server, compact_after=0)  # the tail alone: format 2's layout
    replay(store, heavy_customers, seed=1)
    assert block_count(redis_client) == 0
    online = store_provider(store).online_store
    for view in VIEWS:
        before = redis_client.info("memory")["used_memory"]
        assert online.compact_sequence_view(store.config, sequence_settings(store.get_feature_view(view))) == 6
        assert redis_client.info("memory")["used_memory"] < before  # blocks are smaller than the tails
    assert block_count(redis_client) == 12 and not list(redis_client.scan_iter(match=b"fsq:*}:z"))
    assert_served_equals_reference(store, heavy_customers)


def test_a_store_written_in_formats_3_and_4_is_converted_online_with_no_wrong_read(
    tmp_path, redis_server, redis_client, heavy_customers
):
    """Blocks of the older formats (rows) are read as they are and rewritten as format 5 (columns)
    by the compactor while readers read: every read during the conversion is the true sequence."""
    store = long_store(tmp_path, redis_server, compact_after=64)  # blocks, and tails beside them
    replay(store, heavy_customers, seed=6)
    keys = sorted(redis_client.scan_iter(match=b"fsq:*}:c"))
    assert len(keys) == 12
    for n, key in enumerate(keys):
        redis_client.set(key, old_format(redis_client.get(key), 3 + n % 2))
    customers = sorted(int(c) for c in heavy_customers["customer_id"].unique())
    truth = {view: served(store, view, customers) for view in VIEWS}
    assert_served_equals_reference(store, heavy_customers)
    stop, wrong, reads = threading.Event(), [], [0]

    def reader():
        reader_store = reopened(store)
        while not stop.is_set():
            for view in VIEWS:
                if served(reader_store, view, customers) != truth[view]:
                    wrong.append(view)
                reads[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        online = store_provider(store).online_store
        for view in VIEWS:
            online.compact_sequence_view(store.config, sequence_settings(store.get_feature_view(view)), batch=1)
    finally:
        stop.set()
        thread.join()
    assert not wrong and reads[0] > 0
    assert sorted(redis_client.get(k)[:1] for k in keys) == [b"\x05"] * 12
    assert not list(redis_client.scan_iter(match=b"fsq:*}:z"))  # the tails were compacted too
    assert_served_equals_reference(store, heavy_customers)


def test_a_compactor_racing_writers_and_readers_changes_no_answer(
    tmp_path, redis_server, redis_client, heavy_customers
):
    store = long_store(tmp_path, redis_server, compact_after=0)
    online = store_provider(store).online_store
    settings = [sequence_settings(store.get_feature_view(v)) for v in VIEWS]
    customers = sorted(int(c) for c in heavy_customers["customer_id"].unique())
    stop, errors = threading.Event(), []

    def compactor():
        try:
            while not stop.is_set():
                for s in settings:
                    online.compact_sequence_view(store.config, s)
        except Exception as exc:  # re-raised in the test thread
            errors.append(exc)

    def reader():
        reader_store = reopened(store)
        try:
            while not stop.is_set():
                for view in VIEWS:
                    for events in served(reader_store, view, customers).values():
                        assert len(events) <= 1000
                        assert len(set(events)) == len(events), "a read saw an event twice"
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=compactor), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    try:
        replay(store, heavy_customers, seed=2, chunk=300)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    for s in settings:
        online.compact_sequence_view(store.config, s)
    assert_served_equals_reference(store, heavy_customers)


COMPACT_FOREVER = """
import sys
from feast import FeatureStore
from feast_sequence import sequence_settings
from feast_sequence.feast_internals import store_provider

store = FeatureStore(repo_path=".")
online = store_provider(store).online_store
views = [sequence_settings(store.get_feature_view(v)) for v in sys.argv[1:]]
print("ready", flush=True)
while True:
    for settings in views:
        online.compact_sequence_view(store.config, settings, batch=1)
"""


def test_compactors_killed_mid_way_lose_and_duplicate_nothing(tmp_path, redis_server, redis_client, heavy_customers):
    store = long_store(tmp_path, redis_server, compact_after=0)
    events = heavy_customers.sample(frac=1.0, random_state=4)
    rounds = np.array_split(np.arange(len(events)), 4)
    rng = np.random.default_rng(5)
    kills = 0
    for positions in rounds:
        chunks = [events.iloc[p] for p in np.array_split(positions, 6)]
        compactor = subprocess.Popen(
            [sys.executable, "-c", COMPACT_FOREVER, *VIEWS], cwd=store.repo_path, stdout=subprocess.PIPE, text=True
        )
        assert compactor.stdout.readline().strip() == "ready"
        # Push while it compacts, then kill it at a random moment.
        for chunk in chunks:
            store.push("events_push", chunk)
        time.sleep(float(rng.uniform(0, 0.3)))
        compactor.send_signal(signal.SIGKILL)
        compactor.wait()
        kills += 1
    assert kills == 4 and block_count(redis_client) > 0
    assert_served_equals_reference(store, heavy_customers)


def test_a_correction_of_compacted_sequences_equals_one_of_uncompacted(
    tmp_path, redis_server, redis_client, heavy_customers
):
    start, end = heavy_customers["event_timestamp"].quantile([0.3, 0.6]).tolist()
    in_range = heavy_customers["event_timestamp"].between(start, end)
    source = heavy_customers[~in_range | (heavy_customers.index % 2 == 0)]  # the source lost half the range
    results = []
    for compact_after in (0, 5):
        redis_client.flushall()
        store = long_store(tmp_path, redis_server, compact_after=compact_after)
        replay(store, heavy_customers, seed=6)
        for view in VIEWS:
            settings = sequence_settings(store.get_feature_view(view))
            target = IndexTarget(store.config.online_store, store.project, settings)
            frames = [source[source["event_timestamp"].between(start, end)]]
            write_frames(target, frames, replace_range_us=(datetime_to_us(start), datetime_to_us(end)))
        customers = sorted(int(c) for c in heavy_customers["customer_id"].unique())
        results.append({v: served(store, v, customers) for v in VIEWS})
        assert (block_count(redis_client) > 0) == (compact_after > 0)
    assert results[0] == results[1]
    # and the correction did replace the range: only the source's events of it are served
    kept = source[source["event_timestamp"].between(start, end)]
    allowed = set(zip(kept["invoice"], kept["item_id"]))
    served_in_range = [
        (invoice, item)
        for rows in results[0]["long"].values()
        for invoice, item, _, _, ts in rows
        if start.floor("s") <= pd.Timestamp(ts) <= end
    ]
    assert served_in_range and set(served_in_range) <= allowed
