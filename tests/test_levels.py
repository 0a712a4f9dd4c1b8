"""A sequence's compacted events in levels (storage/levels.py, docs/storage-layout.md "Levels"): any
number of blocks and a tail merge into the sequence of their union; on a real Redis, compactions
write small levels beside a large base, and every reader and writer of a sequence (reads, the cap,
TTL, erase, corrections, the enrichment rewrite, verify, the re-encoding at `feast apply`, a
compactor dying or losing a race) handles all of them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, List, Tuple

import pandas as pd
import pytest
from feast import Field
from feast.types import Bool, Float64, Int32, String
from hypothesis import given, settings
from hypothesis import strategies as st
from races import Writers, as_served, frame, race_store

from feast_sequence import erase, sequence_settings
from feast_sequence.online.verify import verify_view
from feast_sequence.storage import blocks, levels
from feast_sequence.storage.compaction import CHANGED, COMPACTED, TAIL_GONE, rewrite, served
from feast_sequence.storage.drivers import drive
from feast_sequence.storage.keys import levels_key, read_keys, writing_keys
from feast_sequence.storage.redis_io import NO_ACKS, NO_RETRY, run_round_trip
from feast_sequence.storage.scripts import READ

from reference import reference_sequences, stored_bytes
from repos import applied_store, push_source, sequence_online, sequence_views, user
from sample_repo import EVENT_COLUMNS, click_records

T0 = pd.Timestamp("2024-01-01", tz="UTC")
SECOND = pd.Timedelta(seconds=1)
CAP = 200  # max_length of the views on Redis
BASE = 160  # events of the base block of ``layered``: levels form beside it until they hold BASE / 8


# --- without Redis: the merge of any number of parts, and reads of them -------------------------


def _element(number: int, payload: bytes) -> bytes:
    return bytes((((number << 3) | 2) & 0x7F | 0x80, number >> 4, len(payload))) + payload


def member(identity: bytes, payload: bytes, score: int, dedup: bool) -> bytes:
    """A stored event as protobuf elements: with dedup_by its identity (one element) comes first;
    without, the score is part of it, as a timestamp is."""
    body = _element(16, identity) + _element(17, payload)
    return body if dedup else body + _element(18, str(score).encode())


def part(rows: List[Tuple[int, bytes, bytes]], dedup: bool, max_length: int) -> blocks.Events:
    """A merged part of a sequence (a block, or a tail): its best version per identity, newest
    ``max_length``, newest first."""
    best = {}
    for score, identity, payload in rows:
        m = member(identity, payload, score, dedup)
        key = identity if dedup else m
        if key not in best or (score, m) > best[key]:
            best[key] = (score, m)
    ordered = sorted(best.values(), reverse=True)[:max_length]
    return blocks.Events([s for s, _ in ordered], [m for _, m in ordered], [4 if dedup else 0] * len(ordered))


def reference(all_rows, dedup: bool, max_length: int, oldest):
    whole = part(all_rows, dedup, 10**6)
    kept = [m for s, m in zip(whole.scores, whole.members) if oldest is None or s >= oldest]
    return kept[:max_length]


row = st.tuples(st.integers(0, 30), st.sampled_from([b"a", b"b", b"c", b"d", b"e"]), st.sampled_from([b"x", b"yy"]))


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.lists(row, max_size=10), min_size=1, max_size=5),
    tail_rows=st.lists(row, max_size=10),
    dedup=st.booleans(),
    max_length=st.integers(1, 8),
    oldest=st.one_of(st.none(), st.integers(0, 30)),
    shift=st.booleans(),
)
def test_a_read_of_a_base_levels_and_a_tail_is_the_sequence_of_their_union(
    parts, tail_rows, dedup, max_length, oldest, shift
):
    if shift:  # disjoint time ranges, newest part last: the read's concatenation path
        parts = [[(s + 40 * n, i, p) for s, i, p in rows] for n, rows in enumerate(parts)]
        tail_rows = [(s + 40 * len(parts), i, p) for s, i, p in tail_rows]
    stored = [blocks.encode(e) for e in (part(rows, dedup, max_length) for rows in parts) if len(e)]
    tail = part(tail_rows, dedup, max_length)
    tail_reply: List[Any] = []
    for score, m in zip(tail.scores, tail.members):
        if oldest is None or score >= oldest:  # READ returns the tail within the bound
            tail_reply += [m, str(score).encode()]
    bound = b"-inf" if oldest is None else str(oldest).encode()
    reply = [stored[0] if stored else None, tail_reply, bound, str(max_length).encode(), stored[1:]]
    want = reference([r for rows in parts for r in rows] + tail_rows, dedup, max_length, oldest)
    got = served(reply, 1 if dedup else 0)
    assert got.members() == want
    assert got.data == b"".join(want) and got.count == len(want)
    merged = levels.merged([tail, *(blocks.decode_events(b) for b in stored)], max_length, oldest)
    assert merged.members == want


# --- on Redis ------------------------------------------------------------------------------------


@pytest.fixture
def writers(tmp_path, redis_server, redis_client):
    redis_client.flushall()
    # compact_after 0: only the test's own compactions, at the points it chooses
    return Writers(race_store(tmp_path / uuid.uuid4().hex[:8], redis_server.connection_string, CAP, compact_after=0))


def clicks(first: int, count: int, start: pd.Timestamp = T0, step: pd.Timedelta = SECOND) -> pd.DataFrame:
    """Events ``k`` = first.. of user 1: item ``ik``, n = k, at start + k * step."""
    return frame([(1, f"i{k}", k, 1.0, False, start + k * step) for k in range(first, first + count)])


def compact(writers: Writers, view: str, user_id: int = 1) -> Any:
    return writers.compact(view, user_id, writers.snapshot(view, user_id))


def stored_levels(writers: Writers, view: str, user_id: int = 1) -> levels.Stored:
    keys = writers.keys(view, user_id)
    return levels.Stored(writers.client.get(keys[2]), levels.pairs(writers.client.hgetall(levels_key(keys))))


def expected(writers: Writers, view: str, pushed: pd.DataFrame, user_id: int = 1):
    return as_served(reference_sequences(writers.settings[view], click_records([pushed])).get(user_id, []))


def layered(writers: Writers, view: str, **at: Any) -> pd.DataFrame:
    """A sequence with a base of BASE events (``k`` = 0..159, at ``k`` seconds) and two levels
    (k = 160..167 and 168, 169) beside it, and no tail."""
    pushed = [clicks(0, BASE, **at)]
    writers.push(pushed[0])
    assert compact(writers, view) == COMPACTED
    for first in range(BASE, BASE + 10, 2):  # levels of 2, then 4 (2 + 2), 4 and 2, then 8 (2 + 2 + 4), 8 and 2
        pushed.append(clicks(first, 2, **at))
        writers.push(pushed[-1])
        assert compact(writers, view) == COMPACTED
    stored = stored_levels(writers, view)
    assert stored.base is not None and sorted(int(n.split(b":")[1]) for n in stored.levels) == [2, 8]
    return pd.concat(pushed)


@pytest.mark.parametrize("view", ["plain", "dedup"])
def test_compactions_of_a_long_sequence_write_levels_and_reads_merge_them_under_the_cap(writers, view):
    pushed = layered(writers, view)
    assert blocks.decode(stored_levels(writers, view).base).count == BASE  # the base was not rewritten
    assert writers.served(view, [1])[1] == expected(writers, view, pushed)
    # Levels grow until merging the base is warranted; the cap holds throughout.
    base_merges = 0
    for first in range(BASE + 10, BASE + 100, 3):
        more = clicks(first, 3)
        pushed = pd.concat([pushed, more])
        writers.push(more)
        assert compact(writers, view) == COMPACTED
        stored = stored_levels(writers, view)
        base_merges += not stored.levels
        want = expected(writers, view, pushed)
        assert len(want) == min(len(pushed), CAP) and writers.served(view, [1])[1] == want
        assert len(stored.parts()) <= levels.MAX_BLOCKS and blocks.decode(stored.base).count <= CAP
    assert len(pushed) > CAP and base_merges >= 2


def test_an_identity_shadowed_across_levels_serves_its_newest_version(writers):
    pushed = layered(writers, "dedup")
    # i3 again, newest (in a level), and i30 again, older than its stored version (the level's
    # copy of it loses to the one stored earlier).
    # i3 again, newest (into a level), and i165 again, older than its version stored in a level.
    again = frame([(1, "i3", 300, 7.0, True, T0 + 500 * SECOND), (1, "i165", 301, 8.0, True, T0 + 1 * SECOND)])
    writers.push(again)
    assert compact(writers, "dedup") == COMPACTED
    stored = stored_levels(writers, "dedup")
    assert blocks.decode(stored.base).count == BASE and len(stored.levels) >= 2  # the base keeps i3's old version
    want = expected(writers, "dedup", pd.concat([pushed, again]))
    got = writers.served("dedup", [1])[1]
    assert got == want and len(got) == BASE + 10
    assert [e[:2] for e in got if e[0] in ("i3", "i165")] == [("i3", 300), ("i165", 165)]


@pytest.mark.parametrize("view", ["plain", "dedup"])
def test_a_compactor_that_dies_or_loses_a_race_between_level_writes_changes_nothing(writers, redis_client, view):
    pushed = layered(writers, view)
    more = clicks(BASE + 20, 2)
    writers.push(more)
    dead = writers.snapshot(view, 1)  # a compactor that read, planned a level merge, and died
    assert dead[4] == b"level" and dead[3]
    before = stored_levels(writers, view)
    want = expected(writers, view, pd.concat([pushed, more]))
    assert writers.served(view, [1])[1] == want
    assert compact(writers, view) == COMPACTED  # the next compactor shares its version and commits
    assert writers.compact(view, 1, dead) == CHANGED  # the dead one's COMPACT, were it sent late
    assert stored_levels(writers, view) != before and writers.served(view, [1])[1] == want

    # A level deleted under a compactor (keys removed without a script) is not brought back.
    writers.push(clicks(BASE + 30, 4))  # as many as the smallest level holds: merged with it
    snapshot = writers.snapshot(view, 1)
    assert snapshot[3]
    redis_client.hdel(levels_key(writers.keys(view, 1)), snapshot[3][0])
    assert writers.compact(view, 1, snapshot) == TAIL_GONE


@pytest.mark.parametrize("view", ["plain", "dedup"])
def test_a_correction_moves_every_level_back(writers, view):
    pushed = layered(writers, view)
    correction = frame([(1, "fixed", 1000, 2.0, True, T0 + 158 * SECOND)])
    writers.correct(view, correction, T0 + 150 * SECOND, T0 + 165 * SECOND)  # the base and a level
    kept = pushed[(pushed["ts"] < T0 + 150 * SECOND) | (pushed["ts"] > T0 + 165 * SECOND)]
    assert not stored_levels(writers, view)  # base and levels moved back into the tail
    assert writers.served(view, [1])[1] == expected(writers, view, pd.concat([kept, correction]))


@pytest.mark.parametrize("view", ["plain", "dedup"])
def test_the_enrichment_rewrite_moves_every_level_back(writers, view):
    pushed = layered(writers, view)
    prices = {f"i{k}": 10.0 + k for k in range(BASE + 10)}
    writers.enrich(view, prices)
    assert not stored_levels(writers, view)
    assert writers.served(view, [1])[1] == expected(writers, view, pushed.assign(price=pushed["item"].map(prices)))


@pytest.mark.parametrize("view", ["plain", "dedup"])
def test_erase_removes_events_from_the_base_and_every_level(writers, redis_client, view):
    pushed = layered(writers, view)
    writers.push(clicks(BASE + 20, 1))
    cut = T0 + (BASE + 8) * SECOND  # every event of the base and of one level, one of the other level's
    erase(writers.store, [{"user_id": 1}], views=[view], before=cut.to_pydatetime())
    stored = stored_levels(writers, view)
    assert stored.base is not None and not stored.levels  # the blocks' later events, merged into the base
    assert min(blocks.decode_events(stored.base).scores) > cut.value // 1000
    later = pd.concat([pushed, clicks(BASE + 20, 1)])
    assert writers.served(view, [1])[1] == expected(writers, view, later[later["ts"] > cut])
    erase(writers.store, [{"user_id": 1}], views=[view])
    assert not stored_levels(writers, view) and writers.served(view, [1])[1] == []
    assert not redis_client.exists(*writing_keys(writers.keys(view, 1)))


@pytest.mark.parametrize("view", ["plain", "dedup"])
def test_verify_checks_every_level_and_the_re_encoding_merges_them_all(writers, redis_client, view):
    pushed = layered(writers, view)
    settings_ = writers.settings[view]
    assert verify_view(redis_client, writers.config, settings_) == []
    key = levels_key(writers.keys(view, 1))
    name, block = sorted(redis_client.hgetall(key).items())[0]
    redis_client.hset(key, name, block[:-1] + bytes([block[-1] ^ 1]))
    findings = verify_view(redis_client, writers.config, settings_)
    assert len(findings) == 1 and findings[0].problem.startswith(f"level {name.decode()}: block checksum mismatch")
    redis_client.hset(key, name, block)

    run = lambda trip: run_round_trip(redis_client, trip)  # noqa: E731
    assert drive(rewrite(settings_, [writers.keys(view, 1)], NO_RETRY, NO_ACKS), run) == 1
    stored = stored_levels(writers, view)
    assert stored.base is not None and not stored.levels
    assert writers.served(view, [1])[1] == expected(writers, view, pushed)


def test_levels_expire_with_the_sequence_and_reads_cut_them_at_the_ttl(tmp_path, redis_server, redis_client):
    redis_client.flushall()
    fields = [Field(name="item", dtype=String), Field(name="n", dtype=Int32)]
    fields += [Field(name="flag", dtype=Bool), Field(name="price", dtype=Float64)]
    views = sequence_views(
        {"plain": {}, "dedup": {"dedup_by": ["item"]}},
        entities=[user],
        source=push_source("clicks", tmp_path / "events", EVENT_COLUMNS),
        schema=fields,
        max_length=CAP,
        ttl=timedelta(hours=1),
    )
    store = applied_store(
        tmp_path / "repo", "ttl", sequence_online(redis_server.connection_string, compact_after=0), [user, *views]
    )
    writers = Writers(store)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    start = now - timedelta(minutes=50)  # a minute apart, the newest 7 minutes old
    minute = pd.Timedelta(minutes=1)
    for view in ("plain", "dedup"):
        settings_ = sequence_settings(store.get_feature_view(view))
        pushed = [clicks(0, 40, start, minute)]
        writers.push(pushed[0])
        assert compact(writers, view) == COMPACTED
        for first in range(40, 43):  # levels of 1, then 2 (1 + 1), then 2 and 1
            pushed.append(clicks(first, 1, start, minute))
            writers.push(pushed[-1])
            assert compact(writers, view) == COMPACTED
        stored = stored_levels(writers, view)
        assert stored.base is not None and len(stored.levels) == 2
        everything = pd.concat(pushed)
        # Read as of 20 minutes later, the TTL cuts the base (its 10 oldest) and keeps every level.
        later = (now + timedelta(minutes=20)).value // 1000
        want = reference_sequences(settings_, click_records([everything]), now_us=later).get(1, [])
        reply = redis_client.eval(READ.source, 4, *read_keys(writers.keys(view, 1)), later - settings_.ttl_us, 1000)
        got = served(reply, len(settings_.dedup_by)).members()
        assert len(got) == 33 and got == [stored_bytes(settings_, e)[0] for e in want]
        assert writers.served(view, [1])[1] == as_served(reference_sequences(settings_, click_records([everything]))[1])
        # Every key of the sequence expires with its newest event, the levels' included.
        newest_ms = (everything["ts"].max() + timedelta(hours=1)).value // 1_000_000
        keys = writers.keys(view, 1)
        assert [redis_client.pexpiretime(k) for k in (keys[2], levels_key(keys))] == [newest_ms, newest_ms]
        assert not redis_client.exists(keys[0])  # no tail is left
