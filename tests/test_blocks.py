"""Compacted blocks (storage/blocks.py), without Redis: the format round-trips and ``merge`` is the
sequence semantics (docs/concepts.md) for any split of a history into a block and a tail."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feast_sequence.errors import SequenceStoreError
from feast_sequence.storage import blocks


def events_from(rows, identity_bytes: int) -> blocks.Events:
    """Events newest first, one version per identity, from (score, identity, payload) rows."""
    best = {}
    for score, identity, payload in rows:
        member = identity + payload if identity_bytes else identity + payload + str(score).encode()
        key = identity if identity_bytes else member
        if key not in best or (score, member) > best[key]:
            best[key] = (score, member)
    ordered = sorted(best.values(), reverse=True)
    return blocks.Events([s for s, _ in ordered], [m for _, m in ordered], [identity_bytes] * len(ordered))


def reference(rows, identity_bytes: int, max_length: int, oldest):
    everything = events_from(rows, identity_bytes)
    kept = [(s, m) for s, m in zip(everything.scores, everything.members) if oldest is None or s >= oldest]
    return kept[:max_length]


row = st.tuples(st.integers(0, 20), st.sampled_from([b"a", b"b", b"c", b"d"]), st.sampled_from([b"x", b"yy", b""]))


@settings(max_examples=300, deadline=None)
@given(
    block_rows=st.lists(row, max_size=12),
    tail_rows=st.lists(row, max_size=12),
    dedup=st.booleans(),
    max_length=st.integers(1, 8),
    oldest=st.one_of(st.none(), st.integers(0, 20)),
)
def test_merge_of_a_block_and_a_tail_is_the_sequence_of_their_union(block_rows, tail_rows, dedup, max_length, oldest):
    identity_bytes = 1 if dedup else 0
    # A block is itself a merged sequence (capped); a tail is deduplicated on its own.
    stored = reference(block_rows, identity_bytes, max_length, None)
    block = blocks.Events([s for s, _ in stored], [m for _, m in stored], [identity_bytes] * len(stored))
    tail = events_from(tail_rows, identity_bytes)
    merged = blocks.merge(block, tail, max_length, oldest)
    want = reference(block_rows + tail_rows, identity_bytes, max_length, oldest)
    assert list(zip(merged.scores, merged.members)) == want


@settings(max_examples=300, deadline=None)
@given(
    block_rows=st.lists(row, max_size=12),
    tail_rows=st.lists(row, min_size=1, max_size=12),
    max_length=st.integers(1, 8),
    oldest=st.one_of(st.none(), st.integers(0, 45)),
)
def test_prepending_a_newer_tail_is_the_merge(block_rows, tail_rows, max_length, oldest):
    """Compaction's fast path (no dedup_by, every tail event newer than the block) writes the block
    that the general merge writes."""
    stored = reference(block_rows, 0, max_length, None)
    block = blocks.Events([s for s, _ in stored], [m for _, m in stored], [0] * len(stored))
    tail = events_from([(score + 25, i, p) for score, i, p in tail_rows], 0)  # newer than any block row
    encoded = blocks.encode(block)
    decoded = blocks.decode(encoded)
    if decoded is None:
        return  # an empty block is never stored: compaction then takes the general path
    fast = blocks.prepend(decoded, tail, max_length, oldest)
    merged = blocks.merge(block, tail, max_length, oldest)
    assert blocks.decode_events(fast) == merged
    if len(merged):
        assert blocks.header_of(fast).rsplit(b":", 1)[0] == blocks.header_of(blocks.encode(merged)).rsplit(b":", 1)[0]
    else:
        assert fast == b""


@settings(deadline=None)
@given(st.lists(row, max_size=40), st.booleans())
def test_a_block_decodes_to_the_events_it_was_encoded_from(rows, dedup):
    events = events_from(rows, 1 if dedup else 0)
    assert blocks.decode_events(blocks.encode(events)) == events


def test_blocks_written_through_pyarrows_codec_still_decode():
    """The first blocks (format 3, no checksum) were compressed by pyarrow's zstd codec; both write
    standard zstd frames."""
    import pyarrow as pa

    events = events_from([(5, b"a", b"x"), (3, b"b", b"yy"), (9, b"c", b"")], 1)
    ours = blocks.encode_rows(events)
    header = b"\x03" + blocks.header_of(ours)[1:]
    raw = blocks.decode(ours).raw
    theirs = header + len(raw).to_bytes(4, "little") + pa.Codec("zstd", compression_level=3).compress(raw, asbytes=True)
    assert blocks.decode_events(theirs) == events


def test_every_write_gets_a_new_header_and_headers_are_parsed():
    events = events_from([(5, b"a", b"x"), (3, b"b", b"")], 1)
    first, second = blocks.encode(events), blocks.encode(events)
    assert blocks.header_of(first).startswith(b"\x055:2:")
    assert blocks.header_of(first) != blocks.header_of(second)  # a compare-and-set cannot be fooled
    assert blocks.header_of(None) == b""


def test_a_block_of_an_unknown_format_is_an_error_not_garbage():
    with pytest.raises(SequenceStoreError, match="unknown block format 9"):
        blocks.decode(b"\x09whatever")


def test_identity_length_reads_protobuf_elements():
    # field 16 (2-byte tag) string "ab", then field 17 varint 300, then the timestamp element.
    member = b"\x82\x01\x02ab" + b"\x88\x01\xac\x02" + b"\x08\x02"
    assert blocks.IdentityLength(1)(member) == 5
    assert blocks.IdentityLength(2)(member) == 9
    assert blocks.IdentityLength(0)(member) == 0
