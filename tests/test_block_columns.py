"""Format 5's columns (storage/block_columns.py, storage/blocks.py), without Redis: any events the
store encodes go into columns and come back byte for byte, so identities and ties are untouched;
events the columns cannot reproduce are stored as rows, counted; damaged columns raise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from every_type import FIELDS
from feast.value_type import ValueType
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from feast_sequence.errors import CorruptSequenceError
from feast_sequence.storage import block_columns as bc
from feast_sequence.storage import blocks
from feast_sequence.storage.codec import _layout, encode_columns
from feast_sequence.storage.compaction import Served
from feast_sequence.storage.sequence_columns import field_values

VALUES = {
    ValueType.STRING: st.sampled_from(["", "a", "ü", "item_00001", "x" * 200]),
    ValueType.BYTES: st.binary(max_size=20),
    ValueType.INT32: st.integers(-(2**31), 2**31 - 1),
    ValueType.INT64: st.integers(-(2**63), 2**63 - 1),
    ValueType.FLOAT: st.floats(width=32, allow_nan=True),
    ValueType.DOUBLE: st.floats(allow_nan=True),
    ValueType.BOOL: st.booleans(),
    ValueType.UNIX_TIMESTAMP: st.integers(-(2**40), 2**40),
}
TIMES = st.one_of(
    st.integers(0, 10**16),  # any microsecond (a header holds no sign: scores start at 1970)
    st.integers(0, 10**9).map(lambda s: s * 1_000_000),  # whole seconds
    st.integers(0, 10**9).map(lambda s: s * 1_000),  # whole milliseconds
)


def row_block(events: blocks.Events) -> blocks.Events:
    """Newest first, one version per identity, as compaction hands events to a block."""
    best = {}
    for score, member, length in zip(events.scores, events.members, events.identity_lengths):
        identity = member[:length] if length else member
        if identity not in best or (score, member) > best[identity][:2]:
            best[identity] = (score, member, length)
    ordered = sorted(best.values(), reverse=True)
    return blocks.Events([e[0] for e in ordered], [e[1] for e in ordered], [e[2] for e in ordered])


@st.composite
def stored_events(draw):
    """Events of a random view as the store encodes them, some from an older definition that lacked
    the view's last fields (so a block holds several shapes)."""
    fields = tuple(draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=8, unique=True)))
    dedup = tuple(draw(st.lists(st.sampled_from(range(len(fields))), max_size=2, unique=True)))
    older = draw(st.integers(max(dedup, default=-1) + 1, len(fields)))
    scores, members, lengths = [], [], []
    for version in (fields[:older], fields):
        count = draw(st.integers(0, 30))
        if not version or not count:
            continue
        columns = [draw(st.lists(VALUES[f.value_type], min_size=count, max_size=count)) for f in version]
        times = draw(st.lists(TIMES, min_size=count, max_size=count))
        encoded, identities = encode_columns(_layout(version, dedup), columns, times)
        scores += times
        members += encoded
        lengths += [len(i) for i in identities] if identities is not None else [0] * count
    return row_block(blocks.Events(scores, members, lengths))


def body_of(block: bytes) -> bytes:
    """A format 5 block's body byte: columns or rows."""
    return block[block.index(b";") + 1 :][:1]


@settings(max_examples=300, deadline=None)
@given(stored_events())
def test_stored_events_go_into_columns_and_come_back_byte_for_byte(events):
    block = blocks.encode(events)
    if not len(events):
        return
    assert block[:1] == b"\x05" and body_of(block) == b"\x01", "the store's own events always fit columns"
    decoded = blocks.decode(block)
    assert blocks.decode_events(block) == events
    assert decoded.packed(len(events)) == b"".join(events.members)
    assert blocks.problem(block) is None


@settings(max_examples=100, deadline=None)
@given(stored_events(), st.integers(1, 40), st.one_of(st.none(), st.integers(0, 10**16)))
def test_prepending_to_a_columnar_block_is_the_merge(events, max_length, oldest):
    """Compaction's fast path, on a format 5 block: the tail is the newest half of the events."""
    half = len(events) // 2
    tail = blocks.Events(events.scores[:half], events.members[:half], events.identity_lengths[:half])
    older = blocks.Events(events.scores[half:], events.members[half:], events.identity_lengths[half:])
    decoded = blocks.decode(blocks.encode(older))
    if decoded is None or not len(tail) or tail.scores[-1] <= decoded.newest:
        return
    merged = blocks.merge(older, tail, max_length, oldest)
    assert blocks.decode_events(blocks.prepend(decoded, tail, max_length, oldest)) == merged


def test_columns_give_each_fields_values_newest_first():
    layout = _layout(FIELDS, ())
    columns = [["a", "b", "a"], [b"", b"\x00", b""], [1, -2, 3], [5, 6, -(2**63)], [1.5, -0.25, math.inf]]
    columns += [[0.1, 0.2, 0.3], [True, False, True], [7, 8, 9]]
    times = [3_000_000, 2_500_000, 1_000_000]
    members, _ = encode_columns(layout, columns, times)
    decoded = blocks.decode(blocks.encode(blocks.Events(times, members, [0, 0, 0])))
    got = decoded.columns().columns
    by_number = {c.field_number: c for c in got.values()}
    strings = by_number[FIELDS[0].stored_number]
    assert [strings.dictionary[i] for i in strings.values] == [b"a", b"b", b"a"]
    assert bc.unzigzag(by_number[FIELDS[3].stored_number].values).tolist() == [5, 6, -(2**63)]
    assert by_number[FIELDS[4].stored_number].values.view("<f4").ravel().tolist() == [1.5, -0.25, math.inf]
    assert bc.unzigzag(by_number[1].values).tolist() == [3, 2, 1]  # the timestamps' seconds
    assert by_number[2].events.tolist() == [1]  # microseconds only where there are some


def test_a_block_read_again_is_decoded_once_and_a_rewritten_one_is_never_served_stale():
    """The decode cache is keyed by the whole stored block: equal bytes share one decoded, read-only
    block; a rewrite of the same sequence (same scores, same count, other values) decodes anew."""
    layout = _layout(FIELDS[:1], ())
    times = [3_000_000, 2_000_000]
    first, _ = encode_columns(layout, [["a", "b"]], times)
    block = blocks.encode(blocks.Events(times, first, [0, 0]))
    shared = blocks.decode(block)
    assert blocks.decode(bytes(bytearray(block))) is shared
    assert field_values(layout, Served(None, 2, ((shared, 2),)), 0).tolist() == ["a", "b"]
    with pytest.raises(ValueError):
        shared.scores[0] = 0
    second, _ = encode_columns(layout, [["c", "b"]], times)
    rewritten = blocks.decode(blocks.encode(blocks.Events(times, second, [0, 0])))
    assert rewritten is not shared
    assert field_values(layout, Served(None, 2, ((rewritten, 1),)), 0).tolist() == ["c"]
    assert field_values(layout, Served(None, 2, ((shared, 2),)), 0).tolist() == ["a", "b"]


def test_shared_blocks_keep_at_most_their_events_least_recently_used_out():
    layout = _layout(FIELDS[:1], ())
    times = [3_000_000, 2_000_000]
    members = [encode_columns(layout, [[v, "b"]], times)[0] for v in "xyz"]
    stored = [blocks.encode(blocks.Events(times, m, [0, 0])) for m in members]
    shared = blocks.SharedBlocks(max_events=4)
    first, second = shared.decode(stored[0]), shared.decode(stored[1])
    assert shared.decode(stored[0]) is first  # used again: now the most recent
    shared.decode(stored[2])  # 6 events: the least recently used (the second) goes
    assert shared.decode(stored[0]) is first and shared.decode(stored[1]) is not second
    tiny = blocks.SharedBlocks(max_events=1)  # a block of more events than that is never kept
    assert tiny.decode(stored[0]) is not tiny.decode(stored[0])


@settings(max_examples=100, deadline=None)
@given(st.lists(stored_events(), min_size=2, max_size=4))
def test_a_fields_columns_of_many_blocks_decode_at_once_as_one_by_one(many):
    """A request's reads decode a field of all their blocks together (``columns_from``)."""
    lazies = [blocks.decode(blocks.encode(events)).columns().columns for events in many if len(events)]
    for tag in {t for lazy in lazies for t in lazy}:
        groups = {}
        for lazy in lazies:
            stored = lazy.pending(tag)
            if stored is not None:
                groups.setdefault(stored.encoding, []).append(stored)
        for group in groups.values():
            together = bc.columns_from(group)
            assert together is not None and len(together) == len(group)
            for stored, column in zip(group, together):
                alone = bc.column_from(stored.tag, stored.encoding, stored.data, stored.scores, stored.events)
                assert (column.tag, column.encoding, column.dictionary) == (alone.tag, alone.encoding, alone.dictionary)
                assert column.values.dtype == alone.values.dtype and column.values.tolist() == alone.values.tolist()
                assert column.events.tolist() == alone.events.tolist()


def test_columns_that_do_not_decode_together_are_left_to_decode_one_by_one():
    """A varint that is not canonical (0 as two bytes) or a column with a varint too many: no batch."""
    events = np.arange(2)
    good = bc.StoredColumn(8, bc.PLAIN, b"\x01\x02", np.zeros(2, dtype=np.int64), events)
    padded = bc.StoredColumn(8, bc.PLAIN, b"\x80\x00\x05", np.zeros(2, dtype=np.int64), events)
    assert bc.columns_from([good, padded]) is None
    assert bc.column_from(8, bc.PLAIN, padded.data, padded.scores, events).values.tolist() == [0, 5]
    shifted = bc.StoredColumn(8, bc.PLAIN, b"\x01\x02\x03", np.zeros(2, dtype=np.int64), events)
    short = bc.StoredColumn(8, bc.PLAIN, b"\x04", np.zeros(2, dtype=np.int64), events)
    assert bc.columns_from([shifted, short]) is None


def _row_blocks() -> float:
    return REGISTRY.get_sample_value("feast_sequence_row_blocks_total") or 0.0


@pytest.mark.parametrize(
    "member",
    [
        b"not protobuf at all \xff\xff",  # no valid elements
        b"\x08\x80\x00",  # field 1 = 0 as a two-byte varint: valid protobuf, not canonical
        b"\x08\x01\x08\x02",  # one field twice
        b"\x0b\x0c",  # a group (wire types 3 and 4): never written by the store
    ],
)
def test_events_columns_cannot_reproduce_are_stored_as_rows_and_counted(member):
    events = blocks.Events([5_000_000, 4_000_000], [member, b"\x08\x04"], [0, 0])
    before = _row_blocks()
    block = blocks.encode(events)
    assert block[:1] == b"\x05" and body_of(block) == b"\x00"
    assert blocks.decode_events(block) == events
    assert _row_blocks() == before + 1


def test_an_identity_that_is_not_whole_elements_is_stored_as_rows():
    events = blocks.Events([5], [b"\x08\x02\x10\x04"], [1])  # the identity ends inside an element
    block = blocks.encode(events)
    assert body_of(block) == b"\x00" and blocks.decode_events(block) == events


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=50))
def test_varints_round_trip_as_protobuf_writes_them(values):
    array = np.array(values, dtype=np.uint64)
    data, lengths = bc.varint_bytes(array)
    expected = b""
    for v in values:
        while v >= 0x80:
            expected += bytes(((v & 0x7F) | 0x80,))
            v >>= 7
        expected += bytes((v,))
    assert data.tobytes() == expected and lengths.sum() == len(expected)
    back, end = bc.read_varints(np.frombuffer(expected, dtype=np.uint8), len(values))
    assert back.tolist() == values and end == len(expected)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 45), st.integers(0, 3))
def test_varints_filling_reads_what_read_varints_reads_and_refuses_the_rest(data, count, offset):
    """The small-block parse (protobuf's, C-level) against the numpy one, on any bytes: the same
    values when ``count`` varints fill the bytes from ``offset``, a ValueError otherwise."""
    try:
        expected, end = bc.read_varints(np.frombuffer(data, dtype=np.uint8), count, offset)
        fits = end == len(data) and offset <= len(data)
    except ValueError:
        fits = False
    if not fits:
        with pytest.raises(ValueError):
            bc.varints_filling(data, count, offset)
        return
    got = bc.varints_filling(data, count, offset)
    assert got.dtype == np.uint64 and got.tolist() == expected.tolist()


@settings(max_examples=200, deadline=None)
@given(stored_events(), st.data())
def test_damaged_columns_raise_corruption_never_another_error(events, data):
    """Below the checksum (recomputed, as a bug would): whatever the body holds, decoding raises
    CorruptSequenceError or gives as many events as the header says, never an exception of another
    kind (the checksum is what tells a damaged block from a true one)."""
    if not len(events):
        return
    block = blocks.encode(events)
    start = block.index(b";") + 2
    # Drawn as a share of the body: the header's length varies with its random generation.
    position = start + data.draw(st.integers(0, 10**6)) % (len(block) - 4 - start)
    damaged = bytearray(block[:-4])
    damaged[position] ^= data.draw(st.integers(1, 255))
    forged = blocks._with_check(bytes(damaged))
    try:
        got = blocks.decode_events(forged)
    except CorruptSequenceError:
        return
    assert len(got) == len(events)
