"""Blocks that cannot lie (issue 22, case 6): a damaged block raises CorruptSequenceError naming the
view, entity and Redis key, or serves the true value; never a wrong one.

Pure tests flip single bits at many positions of a real block; on a real Redis, a corrupted entity
of a multi-entity request is served without events beside the others (or fails the request of a
fail-closed use case), is counted in the metric, and format 3 and 4 blocks stay readable until the
compactor rewrites them as format 5.
"""

from __future__ import annotations

import uuid

import pytest
from integrity_repo import EVENTS, frame, views
from old_blocks import old_format
from prometheus_client import REGISTRY

from feast_sequence import sequence_settings
from feast_sequence.errors import CorruptSequenceError
from feast_sequence.feast_internals import store_provider
from feast_sequence.storage import blocks
from feast_sequence.storage.append import encode_frame
from feast_sequence.storage.blocks import Events, IdentityLength
from feast_sequence.storage.compaction import served

from repos import applied_store, sequence_online


def block_of(view):
    """A real block: 150 pushed events of user 1 as the store encodes and merges them."""
    settings = sequence_settings(view)
    encoded = encode_frame(settings, frame([1]))
    fields = len(settings.dedup_by)
    tail = sorted(zip(encoded.scores_us, encoded.members), reverse=True)
    events = Events([s for s, _ in tail], [m for _, m in tail], [IdentityLength(fields)(m) for _, m in tail])
    return blocks.encode(blocks.merge(blocks.EMPTY, events, settings.max_length)), fields


@pytest.mark.parametrize("view_name", ["plain", "dedup"])
def test_every_single_bit_flip_of_a_block_raises_or_serves_the_true_value(tmp_path, view_name):
    view = {v.name: v for v in views(tmp_path)[2:4]}[view_name]
    block, fields = block_of(view)
    true = served([block, [], b"-inf", 1000], fields)
    flips, raised = 0, 0
    # Every bit of the header and the first and last 64 bytes, and every 5th bit elsewhere.
    positions = [p for p in range(len(block) * 8) if p < 8 * 64 or p >= 8 * (len(block) - 64) or p % 5 == 0]
    for position in positions:
        damaged = bytearray(block)
        damaged[position // 8] ^= 1 << (position % 8)
        flips += 1
        try:
            got = served([bytes(damaged), [], b"-inf", 1000], fields)
        except CorruptSequenceError:
            raised += 1
            continue
        assert (got.data, got.count) == (true.data, true.count), f"bit {position} served a wrong value"
    assert flips > 1000 and raised == flips  # a CRC-32 catches every single-bit flip


def test_a_format_3_block_reads_as_before_and_a_damaged_one_is_refused_when_it_shows(tmp_path):
    block, fields = block_of(views(tmp_path)[2])
    old = old_format(block, 3)  # format 3: format 4 without the checksum
    assert served([old, [], b"-inf", 1000], fields).data == served([block, [], b"-inf", 1000], fields).data
    header_end = old.index(b";")
    truncated = old[: header_end + 5] + old[header_end + 5 : -10]
    with pytest.raises(CorruptSequenceError, match="does not decode"):
        served([truncated, [], b"-inf", 1000], fields)


@pytest.fixture
def store(tmp_path, redis_server, redis_client):
    repo = tmp_path / uuid.uuid4().hex[:8]
    store = applied_store(repo, "p" + repo.name, sequence_online(redis_server.connection_string), views(repo))
    store.push("clicks_push", frame([1, 2, 3]))
    online = store_provider(store).online_store
    online.drain_compactions(timeout_seconds=30)  # none left to run while a test damages a block
    for name in ("plain", "dedup"):
        online.compact_sequence_view(store.config, sequence_settings(store.get_feature_view(name)))
    return store


def _block_key(store, view, user):
    return f"fsq:{store.project}:{view}:{{i\x01{user}}}:c".encode()


def _read(store, view, users):
    return store.get_online_features(features=[f"{view}:n"], entity_rows=[{"user_id": u} for u in users]).to_dict()["n"]


def _corrupt_count(view):
    return REGISTRY.get_sample_value("feast_sequence_corrupt_sequences_total", {"view": view, "where": "read"}) or 0


@pytest.mark.parametrize("view", ["plain", "dedup"])
def test_a_corrupt_entity_is_served_without_events_beside_the_others(store, redis_client, view):
    before = _read(store, view, [1, 2, 3])
    assert all(len(n) == (EVENTS if view == "plain" else 40) for n in before)
    key = _block_key(store, view, 2)
    assert redis_client.exists(key)
    for offset in (0, 5, 40, redis_client.strlen(key) // 2, redis_client.strlen(key) - 1):
        stored = redis_client.get(key)
        damaged = bytearray(stored)
        damaged[offset] ^= 0x10
        redis_client.set(key, bytes(damaged))
        counted = _corrupt_count(view)
        after = _read(store, view, [1, 2, 3])
        assert after[0] == before[0] and after[2] == before[2]
        assert after[1] is None  # null (NOT_FOUND), never a wrong sequence
        assert _corrupt_count(view) == counted + 1
        redis_client.set(key, stored)
    assert _read(store, view, [1, 2, 3]) == before


def test_a_fail_closed_use_case_fails_naming_view_entity_and_key(store, redis_client):
    key = _block_key(store, "plain", 3)
    redis_client.setrange(key, 30, b"\xff")
    users = [{"user_id": 1}, {"user_id": 3}]
    lenient = store.get_online_features(features=store.get_feature_service("lenient"), entity_rows=users)
    assert [len(n) for n in lenient.to_dict()["n"]] == [EVENTS, 0]  # a use case by default: empty, the others served
    with pytest.raises(CorruptSequenceError) as raised:
        store.get_online_features(
            features=store.get_feature_service("strict"), entity_rows=[{"user_id": 1}, {"user_id": 3}]
        )
    error = raised.value
    assert (error.view, error.entity, error.key) == ("plain", "user_id=3", key)
    assert "Sequence view 'plain', entity user_id=3" in str(error) and "verify --view plain --repair" in str(error)


@pytest.mark.parametrize("form", [3, 4])
def test_the_compactor_rewrites_format_3_and_4_blocks_as_format_5(store, redis_client, form):
    before = {v: _read(store, v, [1, 2, 3]) for v in ("plain", "dedup")}
    for view in ("plain", "dedup"):
        for user in (1, 2, 3):
            key = _block_key(store, view, user)
            block = redis_client.get(key)
            redis_client.set(key, old_format(block, form))
    assert {v: _read(store, v, [1, 2, 3]) for v in ("plain", "dedup")} == before
    online = store_provider(store).online_store
    for view in ("plain", "dedup"):
        assert online.compact_sequence_view(store.config, sequence_settings(store.get_feature_view(view))) == 3
        assert all(redis_client.get(_block_key(store, view, u))[:1] == b"\x05" for u in (1, 2, 3))
    assert {v: _read(store, v, [1, 2, 3]) for v in ("plain", "dedup")} == before
