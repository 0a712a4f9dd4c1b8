"""Compacted blocks: the older events of a sequence, stored as one compressed string per sequence.

A sequence is its *tail* (the sorted set that appends go to, as in format 2) plus at most one
*block* (docs/storage-layout.md). A block holds events exactly as the tail would, already merged
under the sequence semantics: one version per identity, newest first (ties by member bytes,
descending, as ``ZREVRANGE`` orders them), at most ``max_length``. Its layout::

    header  b"\\x04" <newest score> ":" <count> ":" <generation> ";"   ASCII, so Lua can parse it
    body    <raw size: u32> zstd( scores | member lengths | identity lengths | members )
    check   <crc32 of header and body: u32>

- scores: i64, the first absolute, then the (non-negative) gap to the previous one;
- member lengths: u32; identity lengths: u16 (the ``dedup_by`` prefix of each member, 0 without);
- members: the stored events' bytes back to back, exactly the sorted-set members.

Keeping the members' own bytes means a block and a tail decode, deduplicate and order the same
way, and the column-wise arrays in front of them (scores, lengths) compress to almost nothing. zstd
(through ``zstandard``) brings a typical event from 36 to about 12 bytes at level 3.

Format 4 ends with a CRC-32 of everything before it, checked before anything else is read
(``verified``): a damaged block raises ``CorruptSequenceError`` instead of serving wrong values. Format 3
(the same without the check) stays readable; compaction rewrites it as format 4.

Merging (``merge``) is the one implementation of "keep the best version of each identity, then the
newest ``max_length``" for compaction and for reads that see both a block and a tail.
"""

from __future__ import annotations

import heapq
import os
import re
import threading
import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import zstandard

from feast_sequence.errors import CorruptSequenceError

BLOCK_FORMAT = 4
UNCHECKED_FORMAT = 3  # format 4 without its checksum: still read, rewritten by compaction
_MAGIC = bytes((BLOCK_FORMAT,))
_HEADER = re.compile(rb"^[\x03\x04](\d+):(\d+):(\d+);")
_CHECK_SIZE = 4
_COMPRESSION_LEVEL = 3


@dataclass(frozen=True)
class Events:
    """Events newest first: parallel lists of scores (µs), members, and identity prefix lengths."""

    scores: List[int]
    members: List[bytes]
    identity_lengths: List[int]

    def __len__(self) -> int:
        return len(self.members)

    def identities(self) -> List[bytes]:
        return [m[:n] if n else m for m, n in zip(self.members, self.identity_lengths)]


EMPTY = Events([], [], [])


class _Zstd:
    """zstd through ``zstandard``: a call costs about 4 µs on a small block where pyarrow's codec
    costs 12 (most of a short sequence's read). Its contexts are not thread-safe: one pair per
    thread, made on first use (no work at import)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _contexts(self) -> Tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        contexts: Optional[Tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]]
        contexts = getattr(self._local, "contexts", None)
        if contexts is None:
            contexts = (zstandard.ZstdCompressor(level=_COMPRESSION_LEVEL), zstandard.ZstdDecompressor())
            self._local.contexts = contexts
        return contexts

    def compress(self, data: bytes) -> bytes:
        return self._contexts()[0].compress(data)

    def decompress(self, data: bytes, decompressed_size: int) -> bytes:
        return self._contexts()[1].decompress(data, max_output_size=decompressed_size)


_CODEC = _Zstd()


def header_of(block: Optional[bytes]) -> bytes:
    """The header a compaction expects to replace ("" for no block): it changes with every write."""
    if not block:
        return b""
    match = _HEADER.match(block)
    if match is None:
        raise CorruptSequenceError(f"block header unreadable (first bytes {block[:16]!r})")
    header: bytes = match.group(0)
    return header


def encode(events: Events) -> bytes:
    """A block holding ``events`` (already merged); a fresh random generation each time."""
    return _encode_columns(
        np.asarray(events.scores, dtype=np.int64),
        _lengths(events.members),
        np.asarray(events.identity_lengths, dtype=np.uint16),
        events.members,
    )


def _lengths(members: Sequence[bytes]) -> np.ndarray:
    return np.fromiter(map(len, members), dtype=np.uint32, count=len(members))


def _encode_columns(scores: np.ndarray, lengths: np.ndarray, prefixes: np.ndarray, members: Sequence[bytes]) -> bytes:
    count = len(scores)
    gaps = scores.copy()
    if count > 1:
        gaps[1:] = scores[:-1] - scores[1:]
    raw = b"".join((gaps.tobytes(), lengths.tobytes(), prefixes.tobytes(), *members))
    body = _CODEC.compress(raw)
    newest = int(scores[0]) if count else 0
    generation = int.from_bytes(os.urandom(4), "little")
    header = b"%s%d:%d:%d;" % (_MAGIC, newest, count, generation)
    return _with_check(b"".join((header, len(raw).to_bytes(4, "little"), body)))


def _with_check(content: bytes) -> bytes:
    return content + zlib.crc32(content).to_bytes(_CHECK_SIZE, "little")


def verified(block: bytes) -> bytes:
    """A stored block without its checksum, once the checksum is found right; raises
    ``CorruptSequenceError`` otherwise. The one integrity check of every block format (a later format
    adds its number here): a CRC-32 over everything before it detects every flipped bit and every
    damaged run of up to 32 bits, in the header as in the body, so nothing of a damaged block is
    ever parsed. Format 3 blocks carry no checksum and are returned as they are."""
    form = block[0]
    if form == UNCHECKED_FORMAT:
        return block
    if form != BLOCK_FORMAT:
        raise CorruptSequenceError(
            f"unknown block format {form}: damaged, or written by a newer feast-sequence (first bytes {block[:16]!r})"
        )
    content, stored = block[:-_CHECK_SIZE], block[-_CHECK_SIZE:]
    computed = zlib.crc32(content)
    if int.from_bytes(stored, "little") != computed:
        raise CorruptSequenceError(
            f"block checksum mismatch (stored {stored.hex()}, computed {computed.to_bytes(4, 'little').hex()})"
        )
    return content


class Block:
    """A decoded block, kept packed: its members stay one buffer until someone needs them apart,
    and its columns are read from the buffer only when asked for (a plain read needs none)."""

    def __init__(self, raw: bytes, count: int, newest: int):
        self.raw = raw
        self.count = count
        self.newest = newest  # the newest event's score, from the header

    @cached_property
    def scores(self) -> np.ndarray:
        """int64, descending."""
        gaps = np.frombuffer(self.raw, dtype=np.int64, count=self.count)
        return np.cumsum(np.concatenate((gaps[:1], -gaps[1:])))

    @cached_property
    def lengths(self) -> np.ndarray:
        """Each member's length."""
        return np.frombuffer(self.raw, dtype=np.uint32, count=self.count, offset=8 * self.count)

    @cached_property
    def identity_lengths(self) -> np.ndarray:
        return np.frombuffer(self.raw, dtype=np.uint16, count=self.count, offset=12 * self.count)

    @property
    def _start(self) -> int:
        return 14 * self.count

    def packed(self, k: int) -> bytes:
        """The first ``k`` members back to back: what a protobuf parse of the sequence takes."""
        if k <= 0:
            return b""
        if k >= self.count:
            return self.raw[self._start :]
        return self.raw[self._start : self._start + int(self.lengths[:k].sum())]

    def within(self, oldest_us: Optional[int], limit: int) -> int:
        """How many of the newest events are at or after ``oldest_us``, at most ``limit``."""
        if oldest_us is None:
            return min(self.count, limit)
        kept = int(np.searchsorted(-self.scores, -oldest_us, side="right"))
        return min(kept, limit)

    def incoherence(self, raw_size: int) -> Optional[str]:
        """What in this block contradicts its header (None if nothing): a format 3 block has no
        checksum, so a damaged one is caught here when it can be."""
        count = self.count
        if len(self.raw) != raw_size or len(self.raw) < 14 * count:
            return f"block body holds {len(self.raw)} bytes, its header says {raw_size} for {count} events"
        if 14 * count + int(self.lengths.sum(dtype=np.int64)) != len(self.raw):
            return f"block member lengths do not add up to its body for {count} events"
        gaps = np.frombuffer(self.raw, dtype=np.int64, count=count)
        if count > 1 and bool((gaps[1:] < 0).any()):
            return "block scores are not newest first"
        if int(gaps[0]) != self.newest:
            return f"block header says its newest event is at {self.newest}, its body {int(gaps[0])}"
        return None

    def events(self) -> Events:
        ends = np.cumsum(self.lengths, dtype=np.int64) + self._start
        starts = ends - self.lengths
        members = [self.raw[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
        return Events(self.scores.tolist(), members, self.identity_lengths.tolist())


def decode(block: Optional[bytes]) -> Optional[Block]:
    """A stored block, verified and decompressed (None for no block or an empty one). Raises
    ``CorruptSequenceError`` for a block that fails its checksum or, for a format 3 block (no
    checksum), does not decode into what its header says."""
    if not block:
        return None
    checked = block[0] == BLOCK_FORMAT
    block = verified(block)
    match = _HEADER.match(block)
    if match is None:
        raise CorruptSequenceError(f"block header unreadable (first bytes {block[:16]!r})")
    newest, count = int(match.group(1)), int(match.group(2))
    if not count:
        return None
    end = match.end()
    raw_size = int.from_bytes(block[end : end + 4], "little")
    try:
        raw = _CODEC.decompress(block[end + 4 :], raw_size)
    except zstandard.ZstdError as error:
        raise CorruptSequenceError(f"block body does not decompress ({error})") from error
    decoded = Block(raw, count, newest)
    problem = None if checked else decoded.incoherence(raw_size)
    if problem:
        raise CorruptSequenceError(problem)
    return decoded


def problem(block: bytes) -> Optional[str]:
    """What is wrong with a stored block (None if nothing): its checksum, its decompression, or its
    body against its header, for every format (a read checks the body only for format 3, whose
    checksum is missing). ``feast-sequence verify`` runs it over every block."""
    try:
        decoded = decode(block)
    except CorruptSequenceError as error:
        return str(error)
    if decoded is None:
        return None
    end = _HEADER.match(block).end()  # type: ignore[union-attr]  # decode parsed it
    return decoded.incoherence(int.from_bytes(block[end : end + 4], "little"))


def is_unchecked(block: Optional[bytes]) -> bool:
    """Whether a stored block is of format 3, without a checksum: compaction rewrites it."""
    return bool(block) and block[0] == UNCHECKED_FORMAT  # type: ignore[index]


def decode_events(block: Optional[bytes]) -> Events:
    decoded = decode(block)
    return decoded.events() if decoded is not None else EMPTY


def tail_events(reply: Sequence[bytes], identity_length: "IdentityLength") -> Events:
    """A ``ZREVRANGE ... WITHSCORES`` reply (member, score, member, score, ...) as events."""
    members = list(reply[0::2])
    return Events([int(float(s)) for s in reply[1::2]], members, [identity_length(m) for m in members])


class IdentityLength:
    """The length of a member's identity prefix: its first ``fields`` protobuf elements (0 = the
    whole member is the identity, for views without ``dedup_by``)."""

    def __init__(self, fields: int):
        self.fields = fields

    def __call__(self, member: bytes) -> int:
        if not self.fields:
            return 0
        pos = 0
        for _ in range(self.fields):
            tag, pos = _varint(member, pos)
            wire = tag & 7
            if wire == 0:
                _, pos = _varint(member, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            else:
                size, pos = _varint(member, pos)
                pos += size
        return pos


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def merge(block: Events, tail: Events, max_length: int, oldest_us: Optional[int] = None) -> Events:
    """The sequence that a block and a tail hold together: the best version (greatest (score,
    member)) of each identity, those at or after ``oldest_us``, the newest ``max_length``, newest
    first. Both inputs are newest first and hold one version per identity each."""
    if not len(block):
        return _window(tail, max_length, oldest_us)
    if not len(tail):
        return _window(block, max_length, oldest_us)
    block_ids, tail_ids = block.identities(), tail.identities()
    shared = set(block_ids).intersection(tail_ids)
    drop_block: Set[int] = set()
    drop_tail: Set[int] = set()
    if shared:
        where_tail: Dict[bytes, int] = {i: n for n, i in enumerate(tail_ids) if i in shared}
        for n, identity in enumerate(block_ids):
            match = where_tail.get(identity)
            if match is None:
                continue
            if (block.scores[n], block.members[n]) >= (tail.scores[match], tail.members[match]):
                drop_tail.add(match)
            else:
                drop_block.add(n)
    b = _keep(block, drop_block)
    t = _keep(tail, drop_tail)
    if not b.scores or not t.scores:
        merged = b if b.scores else t
    elif t.scores[-1] > b.scores[0]:  # the usual case: everything in the tail is newer
        merged = Events(t.scores + b.scores, t.members + b.members, t.identity_lengths + b.identity_lengths)
    else:
        ordered = list(
            heapq.merge(
                zip(t.scores, t.members, t.identity_lengths),
                zip(b.scores, b.members, b.identity_lengths),
                key=lambda e: (e[0], e[1]),
                reverse=True,
            )
        )
        merged = Events([e[0] for e in ordered], [e[1] for e in ordered], [e[2] for e in ordered])
    return _window(merged, max_length, oldest_us)


def goes_in_front(block: Block, identity_fields: int, oldest_tail_us: int) -> bool:
    """Whether a tail whose oldest event is at ``oldest_tail_us`` simply goes in front of ``block``:
    without ``dedup_by`` the timestamp is part of an identity, so a tail entirely newer than the
    block shares no identity with it, and their merge is the tail followed by the block."""
    return not identity_fields and oldest_tail_us > block.newest


def prepend(block: Block, tail: Events, max_length: int, oldest_us: Optional[int] = None) -> bytes:
    """``encode(merge(block.events(), tail, max_length, oldest_us))`` for the usual compaction, a tail
    that ``goes_in_front`` of the block, built from the block's columns and packed members without
    splitting them into events: a compaction of a long sequence then costs a decompression, a few
    array copies and a compression ("" if the result is empty, as a compaction deletes an empty block)."""
    kept = _window(tail, max_length, oldest_us)
    k = block.within(oldest_us, max_length - len(kept)) if len(kept) == len(tail) else 0
    if not len(kept) and not k:
        return b""
    return _encode_columns(
        np.concatenate((np.asarray(kept.scores, dtype=np.int64), block.scores[:k])),
        np.concatenate((_lengths(kept.members), block.lengths[:k])),
        np.concatenate((np.asarray(kept.identity_lengths, dtype=np.uint16), block.identity_lengths[:k])),
        (*kept.members, block.packed(k)),
    )


def _keep(events: Events, drop: Set[int]) -> Events:
    if not drop:
        return events
    keep = [n for n in range(len(events)) if n not in drop]
    return Events(
        [events.scores[n] for n in keep], [events.members[n] for n in keep], [events.identity_lengths[n] for n in keep]
    )


def _window(events: Events, max_length: int, oldest_us: Optional[int]) -> Events:
    end = min(len(events), max_length)
    if oldest_us is not None and end and events.scores[end - 1] < oldest_us:
        # Scores are descending: the first one below the bound ends the window.
        end = _first_below(events.scores, oldest_us, end)
    if end == len(events):
        return events
    return Events(events.scores[:end], events.members[:end], events.identity_lengths[:end])


def _first_below(scores: List[int], bound: int, end: int) -> int:
    low, high = 0, end
    while low < high:
        mid = (low + high) // 2
        if scores[mid] < bound:
            high = mid
        else:
            low = mid + 1
    return low
