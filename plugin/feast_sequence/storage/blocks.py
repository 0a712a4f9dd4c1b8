"""Compacted blocks: the older events of a sequence, stored as one compressed string per sequence.

A sequence is its *tail* (the sorted set that appends go to, as in format 2) plus at most one
*block* (docs/storage-layout.md). A block holds events exactly as the tail would, already merged
under the sequence semantics: one version per identity, newest first (ties by member bytes,
descending, as ``ZREVRANGE`` orders them), at most ``max_length``. Format 5 (written today)::

    header  b"\\x05" <newest score> ":" <count> ":" <generation> ";"   ASCII, so Lua can parse it
    body    b"\\x01" columns (storage/block_columns.py), or b"\\x00" rows (format 4's body)
    check   <crc32 of header and body: u32>

The columns hold each field of the events in a column of its own, encoded for its type, and give
back the members' exact bytes; an encoder checks that they do and stores rows instead for a block
whose members they do not reproduce (counted in ``feast_sequence_row_blocks_total``). Format 4,
the rows, is::

    header  b"\\x04" <newest score> ":" <count> ":" <generation> ";"
    body    <raw size: u32> zstd( scores | member lengths | identity lengths | members )
    check   <crc32 of header and body: u32>

- scores: i64, the first absolute, then the (non-negative) gap to the previous one;
- member lengths: u32; identity lengths: u16 (the ``dedup_by`` prefix of each member, 0 without);
- members: the stored events' bytes back to back, exactly the sorted-set members.

Keeping the members' own bytes means a block and a tail decode, deduplicate and order the same
way, and the column-wise arrays in front of them (scores, lengths) compress to almost nothing. zstd
(through ``zstandard``) brings a typical event from 36 to about 12 bytes at level 3.

Formats 4 and 5 end with a CRC-32 of everything before it, checked before anything else is read
(``verified``): a damaged block raises ``CorruptSequenceError`` instead of serving wrong values. Formats
3 (format 4 without the check) and 4 stay readable; compaction rewrites them as format 5.

Merging (``merge``) is the one implementation of "keep the best version of each identity, then the
newest ``max_length``" for compaction and for reads that see both a block and a tail.
"""

from __future__ import annotations

import heapq
import os
import re
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import zstandard

from feast_sequence.errors import CorruptSequenceError
from feast_sequence.lazy_metrics import LazyMetrics
from feast_sequence.storage import block_columns as bc

BLOCK_FORMAT = 5
ROW_FORMAT = 4  # rows with a checksum: still read, rewritten by compaction as format 5
UNCHECKED_FORMAT = 3  # format 4 without its checksum: still read, rewritten by compaction
_ROWS, _COLUMNS = b"\x00", b"\x01"  # a format 5 body's first byte
_HEADER = re.compile(rb"^[\x03\x04\x05](\d+):(\d+):(\d+);")
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

    def decompressor(self) -> zstandard.ZstdDecompressor:
        """This thread's decompression context, for several decompressions in a row."""
        return self._contexts()[1]


_CODEC = _Zstd()


def _define(prometheus: Any) -> Dict[str, Any]:
    return {
        "ROW_BLOCKS": prometheus.Counter(
            "feast_sequence_row_blocks_total",
            "Blocks written row-wise because their events did not come back byte for byte from "
            "columns (events that are not canonical protobuf, for instance)",
        ),
    }


_METRICS = LazyMetrics(__name__, ("ROW_BLOCKS",), _define)


def __getattr__(name: str) -> Any:
    return _METRICS.attribute(name)


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
    return _encode(
        np.asarray(events.scores, dtype=np.int64),
        _lengths(events.members),
        np.asarray(events.identity_lengths, dtype=np.uint16),
        events.members,
    )


def encode_rows(events: Events) -> bytes:
    """A format 4 block (rows, with a checksum), as written before format 5: for tests of the
    online conversion, which must meet real old blocks."""
    return _encode_rows(
        np.asarray(events.scores, dtype=np.int64),
        _lengths(events.members),
        np.asarray(events.identity_lengths, dtype=np.uint16),
        events.members,
        ROW_FORMAT,
    )


def _encode(scores: np.ndarray, lengths: np.ndarray, prefixes: np.ndarray, members: Sequence[bytes]) -> bytes:
    """Format 5: columns when they give the members back byte for byte, rows otherwise."""
    packed = b"".join(members)
    try:
        body = _column_body(scores, packed, lengths, prefixes)
    except bc.Unfit:
        body = None
    if body is not None:
        return _with_check(_header(BLOCK_FORMAT, scores) + _COLUMNS + body)
    __getattr__("ROW_BLOCKS").inc()
    return _encode_rows(scores, lengths, prefixes, members, BLOCK_FORMAT)


def _header(form: int, scores: np.ndarray) -> bytes:
    count = len(scores)
    newest = int(scores[0]) if count else 0
    generation = int.from_bytes(os.urandom(4), "little")
    return b"%c%d:%d:%d;" % (form, newest, count, generation)


def _section(raw: bytes) -> bytes:
    """One part of a columnar body: its size, its stored size, and its bytes, zstd-compressed when
    that is smaller (a stored size equal to the size means uncompressed)."""
    stored = _CODEC.compress(raw) if len(raw) > 16 else raw
    if len(stored) >= len(raw):
        stored = raw
    return bc.encode_varints(len(raw), len(stored)) + stored


def _column_body(scores: np.ndarray, packed: bytes, lengths: np.ndarray, prefixes: np.ndarray) -> Optional[bytes]:
    """The columnar body (layout, scores, shapes, then one section per column); None when the
    scores are not newest first or the columns do not give the members back."""
    if not len(scores):
        return None
    gaps = scores[:-1] - scores[1:]
    if bool((gaps < 0).any()):
        return None
    columns = bc.split(scores, packed, lengths.astype(np.int64), prefixes.astype(np.int64))
    # The columns are kept only when they give back exactly the members given: ties and
    # identities compare member bytes, so a block must never alter one. (Their bytes below are
    # a lossless, deterministic serialization of them, proven by tests/test_block_columns.py.)
    rebuilt = bc.rebuild(columns)
    if not (
        rebuilt.packed == packed
        and np.array_equal(rebuilt.lengths, lengths)
        and np.array_equal(rebuilt.identity_lengths, prefixes)
    ):
        return None
    layout = [len(columns.shapes)]
    for identity, tags in columns.shapes:
        layout += [identity, len(tags), *tags]
    layout.append(len(columns.columns))
    for tag, column in columns.columns.items():
        layout += [tag, column.encoding]
    # Scores in the largest unit of 1 s, 1 ms or 1 µs that divides them all: timestamps in whole
    # seconds then cost their seconds' varints, not the µs ones.
    digits = next(d for d in (6, 3, 0) if not bool((scores % 10**d).any()))
    unit = 10**digits
    score_values = np.concatenate((bc.zigzag(scores[:1] // unit), (gaps // unit).view(np.uint64)))
    shapes = bc.varint_bytes(columns.shape_of.astype(np.uint64))[0].tobytes() if len(columns.shapes) > 1 else b""
    parts = [bc.encode_varints(*layout), bc.encode_varints(digits) + bc.varint_bytes(score_values)[0].tobytes(), shapes]
    parts += [bc.payload(column) for column in columns.columns.values()]
    return b"".join(map(_section, parts))


def _lengths(members: Sequence[bytes]) -> np.ndarray:
    return np.fromiter(map(len, members), dtype=np.uint32, count=len(members))


def _encode_rows(
    scores: np.ndarray, lengths: np.ndarray, prefixes: np.ndarray, members: Sequence[bytes], form: int
) -> bytes:
    """Rows: the body of format 4, also format 5's fallback (after its body byte)."""
    count = len(scores)
    gaps = scores.copy()
    if count > 1:
        gaps[1:] = scores[:-1] - scores[1:]
    raw = b"".join((gaps.tobytes(), lengths.tobytes(), prefixes.tobytes(), *members))
    body = _CODEC.compress(raw)
    mode = _ROWS if form == BLOCK_FORMAT else b""
    return _with_check(b"".join((_header(form, scores), mode, len(raw).to_bytes(4, "little"), body)))


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
    if form not in (ROW_FORMAT, BLOCK_FORMAT):
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
    """A decoded block: its scores, its members' lengths and identity lengths, and its members
    packed in one buffer until someone needs them apart (``RowBlock`` for formats 3 and 4 and
    format 5's rows, ``ColumnBlock`` for format 5's columns)."""

    def __init__(self, count: int, newest: int):
        self.count = count
        self.newest = newest  # the newest event's score, from the header

    @property
    def scores(self) -> np.ndarray:
        """int64, descending."""
        raise NotImplementedError

    @property
    def lengths(self) -> np.ndarray:
        """Each member's length."""
        raise NotImplementedError

    @property
    def identity_lengths(self) -> np.ndarray:
        raise NotImplementedError

    def packed(self, k: int) -> bytes:
        """The first ``k`` members back to back: what a protobuf parse of the sequence takes."""
        raise NotImplementedError

    def columns(self) -> bc.Columns:
        """The events as columns (storage/block_columns.py): one per field, values newest first."""
        raise NotImplementedError

    def within(self, oldest_us: Optional[int], limit: int) -> int:
        """How many of the newest events are at or after ``oldest_us``, at most ``limit``."""
        if oldest_us is None:
            return min(self.count, limit)
        kept = int(np.searchsorted(-self.scores, -oldest_us, side="right"))
        return min(kept, limit)

    def incoherence(self) -> Optional[str]:
        """What in this block contradicts its header (None if nothing)."""
        return None

    def events(self) -> Events:
        ends = np.cumsum(self.lengths, dtype=np.int64)
        starts = ends - self.lengths
        packed = self.packed(self.count)
        members = [packed[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
        return Events(self.scores.tolist(), members, self.identity_lengths.tolist())

    def same_as(self, scores: np.ndarray, packed: bytes, lengths: np.ndarray, prefixes: np.ndarray) -> bool:
        """Whether this block holds exactly these events, to the byte."""
        return (
            np.array_equal(self.scores, scores)
            and np.array_equal(self.lengths, lengths)
            and np.array_equal(self.identity_lengths, prefixes)
            and self.packed(self.count) == packed
        )


class RowBlock(Block):
    """Rows (formats 3 and 4, and format 5's fallback), kept packed: the columns in front of the
    members are read from the buffer only when asked for (a plain read needs none)."""

    def __init__(self, raw: bytes, count: int, newest: int, raw_size: int):
        super().__init__(count, newest)
        self.raw = raw
        self.raw_size = raw_size  # what the block says its body holds

    @cached_property
    def scores(self) -> np.ndarray:
        gaps = np.frombuffer(self.raw, dtype=np.int64, count=self.count)
        return np.cumsum(np.concatenate((gaps[:1], -gaps[1:])))

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.frombuffer(self.raw, dtype=np.uint32, count=self.count, offset=8 * self.count)

    @cached_property
    def identity_lengths(self) -> np.ndarray:
        return np.frombuffer(self.raw, dtype=np.uint16, count=self.count, offset=12 * self.count)

    @property
    def _start(self) -> int:
        return 14 * self.count

    def packed(self, k: int) -> bytes:
        if k <= 0:
            return b""
        if k >= self.count:
            return self.raw[self._start :]
        return self.raw[self._start : self._start + int(self.lengths[:k].sum())]

    def columns(self) -> bc.Columns:
        try:
            return bc.split(self.scores, self.packed(self.count), self.lengths, self.identity_lengths)
        except bc.Unfit as error:
            raise CorruptSequenceError(f"block events are not protobuf elements ({error})") from error

    def incoherence(self) -> Optional[str]:
        """A format 3 block has no checksum, so a damaged one is caught here when it can be."""
        count = self.count
        if len(self.raw) != self.raw_size or len(self.raw) < 14 * count:
            return f"block body holds {len(self.raw)} bytes, its header says {self.raw_size} for {count} events"
        if 14 * count + int(self.lengths.sum(dtype=np.int64)) != len(self.raw):
            return f"block member lengths do not add up to its body for {count} events"
        gaps = np.frombuffer(self.raw, dtype=np.int64, count=count)
        if count > 1 and bool((gaps[1:] < 0).any()):
            return "block scores are not newest first"
        if int(gaps[0]) != self.newest:
            return f"block header says its newest event is at {self.newest}, its body {int(gaps[0])}"
        return None


class ColumnBlock(Block):
    """Format 5's columns: decoded when the block is read, the members rebuilt from them only
    when someone asks for member bytes."""

    def __init__(self, columns: bc.Columns, newest: int):
        super().__init__(len(columns.scores), newest)
        self._columns = columns
        self._derived: Dict[Any, np.ndarray] = {}

    def derived(self, key: Any, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """``compute()`` (a function of this block's columns named by ``key``), computed once and
        kept read-only: a block may be shared by reads (``decode``), so a field's typed values are
        built once for all of them."""
        value = self._derived.get(key)
        if value is None:
            value = self._derived[key] = _read_only(compute())
        return value

    def kept(self, key: Any) -> Optional[np.ndarray]:
        """What ``derived`` (or ``keep``) holds for ``key``, if anything."""
        return self._derived.get(key)

    def keep(self, key: Any, value: np.ndarray) -> None:
        """Keep ``value`` for ``key``, as ``derived`` would: for values a read computes for several
        blocks at once (storage/sequence_columns.py's callers)."""
        self._derived.setdefault(key, _read_only(value))

    @property
    def scores(self) -> np.ndarray:
        return self._columns.scores

    @cached_property
    def _members(self) -> bc.Members:
        try:
            members = bc.rebuild(self._columns)
            _read_only(members.lengths), _read_only(members.identity_lengths)
            return members
        except (ValueError, IndexError) as error:
            raise CorruptSequenceError(f"block columns do not rebuild its events ({error})") from error

    @property
    def lengths(self) -> np.ndarray:
        return self._members.lengths

    @property
    def identity_lengths(self) -> np.ndarray:
        return self._members.identity_lengths

    @cached_property
    def _ends(self) -> np.ndarray:
        return np.cumsum(self.lengths)

    def packed(self, k: int) -> bytes:
        if k <= 0:
            return b""
        if k >= self.count:
            return self._members.packed
        return self._members.packed[: int(self._ends[k - 1])]

    def columns(self) -> bc.Columns:
        return self._columns


def _column_block(body: bytes, count: int, newest: int) -> ColumnBlock:
    """Format 5's columns from its body (after the body byte); raises ValueError, IndexError or
    ``zstandard.ZstdError`` for bytes that are not such a body."""
    sections: List[bytes] = []
    pos = 0
    decompress = _CODEC.decompressor().decompress
    while pos < len(body):
        raw_size, pos = bc.varint_at(body, pos)
        stored_size, pos = bc.varint_at(body, pos)
        stored = body[pos : pos + stored_size]
        if len(stored) != stored_size or stored_size > raw_size:
            raise ValueError(f"a column of {stored_size} bytes where {len(stored)} are left")
        sections.append(stored if stored_size == raw_size else decompress(stored, max_output_size=raw_size))
        pos += stored_size
    if len(sections) < 3:
        raise ValueError(f"{len(sections)} parts, at least 3 expected")
    layout = bc.varints_in(sections[0])
    shapes: List[Tuple[int, Tuple[int, ...]]] = []
    at = 1
    for _ in range(layout[0]):
        identity, size = layout[at], layout[at + 1]
        shapes.append((identity, tuple(layout[at + 2 : at + 2 + size])))
        at += 2 + size
    tags = layout[at + 1 : at + 1 + 2 * layout[at] : 2]
    encodings = layout[at + 2 : at + 2 + 2 * layout[at] : 2]
    if len(sections) != 3 + len(tags) or set(tags) != {t for _, ts in shapes for t in ts}:
        raise ValueError("its columns are not its fields")
    digits, at = bc.varint_at(sections[1], 0)
    if not count or digits not in (0, 3, 6):
        raise ValueError(f"{count} scores expected")
    scores = _scores(bc.varints_filling(sections[1], count, at), 10**digits)
    if int(scores[0]) != newest:
        raise ValueError("its scores are not newest first from the header's newest")
    if len(shapes) > 1:
        shape_of = bc.varints_filling(sections[2], count).astype(np.int64)
        if int(shape_of.max()) >= len(shapes):
            raise ValueError("event shapes beyond its shapes")
    elif len(shapes) == 1 and not sections[2]:
        shape_of = np.zeros(count, dtype=np.int64)
    else:
        raise ValueError("no event shapes")
    _read_only(scores), _read_only(shape_of)
    every = _read_only(np.arange(count)) if len(shapes) == 1 else None  # the usual block: one shape
    columns: Dict[int, bc.StoredColumn] = {}
    for tag, encoding, data in zip(tags, encodings, sections[3:]):
        events = bc.events_of(shapes, shape_of, tag) if every is None else every
        columns[tag] = bc.StoredColumn(tag, encoding, data, scores, events)
    return ColumnBlock(bc.Columns(scores, shapes, shape_of, bc.LazyColumns(columns, _column)), newest)


def _scores(values: np.ndarray, unit: int) -> np.ndarray:
    """A block's scores (µs, newest first) from their varints: the newest in ``unit`` (zigzag),
    then each gap to the previous one; raises ValueError for a negative gap."""
    gaps = values.view(np.int64)
    if len(gaps) > 1 and int(gaps[1:].min()) < 0:
        raise ValueError("its scores are not newest first from the header's newest")
    steps = -gaps  # each score is the previous one less its gap (int64 wraps as it did when stored)
    newest = int(values[0])
    steps[0] = (newest >> 1) ^ -(newest & 1)
    scores = np.cumsum(steps)
    if unit != 1:
        scores *= unit
    return scores


def _column(stored: bc.StoredColumn) -> bc.Column:
    """One column of a block, decoded when first needed; its checksum was checked with the block."""
    try:
        return shareable(bc.column_from(stored.tag, stored.encoding, stored.data, stored.scores, stored.events))
    except (ValueError, IndexError) as error:
        raise CorruptSequenceError(f"block column of field tag {stored.tag} does not decode ({error})") from error


def shareable(column: bc.Column) -> bc.Column:
    """A decoded column made read-only, to be part of a block that reads may share (``decode``)."""
    _read_only(column.values), _read_only(column.events)
    return column


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array``, made read-only: a decoded block is shared by reads, none may change it."""
    array.flags.writeable = False
    return array


def decode(block: Optional[bytes]) -> Optional[Block]:
    """A stored block, verified and decompressed (None for no block or an empty one). Raises
    ``CorruptSequenceError`` for a block that fails its checksum or, for a format 3 block (no
    checksum), does not decode into what its header says. A format 5 block comes from the recently
    decoded ones (``SHARED_BLOCKS``) when the same bytes were decoded before."""
    if not block:
        return None
    if block[0] == BLOCK_FORMAT:
        return SHARED_BLOCKS.decode(bytes(block))
    return _decode(block)


class SharedBlocks:
    """Format 5 blocks decoded once for all the reads that meet the same stored bytes (a hot
    sequence read again before its next compaction), least recently used first out once they hold
    more than ``max_events`` events. The key is the whole stored block, not its name: its header
    holds the newest score, the count and a random generation that every write renews, and the
    checksum covers the rest, so equal bytes are the same block and a hit never serves an older
    one. Blocks are immutable once decoded (arrays read-only, lazy parts deterministic), so reads on
    several threads may share one. Failures are not kept: a corrupt block raises each time."""

    def __init__(self, max_events: int):
        self.max_events = max_events
        self._blocks: "OrderedDict[bytes, Block]" = OrderedDict()
        self._events = 0
        self._lock = threading.Lock()

    def decode(self, block: bytes) -> Optional[Block]:
        with self._lock:
            found = self._blocks.get(block)
            if found is not None:
                self._blocks.move_to_end(block)
                return found
        decoded = _decode(block)
        if decoded is None or decoded.count > self.max_events:
            return decoded
        with self._lock:
            if block not in self._blocks:
                self._blocks[block] = decoded
                self._events += decoded.count
                while self._events > self.max_events:
                    _, dropped = self._blocks.popitem(last=False)
                    self._events -= dropped.count
        return decoded

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._events = 0


SHARED_BLOCKS = SharedBlocks(max_events=1 << 18)  # about 50 MB of decoded blocks at most


def _decode(block: bytes) -> Optional[Block]:
    form = block[0]
    block = verified(block)
    match = _HEADER.match(block)
    if match is None:
        raise CorruptSequenceError(f"block header unreadable (first bytes {block[:16]!r})")
    newest, count = int(match.group(1)), int(match.group(2))
    if not count:
        return None
    end = match.end()
    try:
        if form == BLOCK_FORMAT:
            end += 1
            if block[end - 1 : end] == _COLUMNS:
                return _column_block(block[end:], count, newest)
            if block[end - 1 : end] != _ROWS:
                raise ValueError(f"unknown body {block[end - 1 : end]!r}")
        raw_size = int.from_bytes(block[end : end + 4], "little")
        decoded = RowBlock(_CODEC.decompress(block[end + 4 :], raw_size), count, newest, raw_size)
    except (zstandard.ZstdError, ValueError, IndexError) as error:
        raise CorruptSequenceError(f"block body does not decode ({error})") from error
    problem = decoded.incoherence() if form == UNCHECKED_FORMAT else None
    if problem:
        raise CorruptSequenceError(problem)
    return decoded


def problem(block: bytes) -> Optional[str]:
    """What is wrong with a stored block (None if nothing): its checksum, its decoding, or its
    body against its header, for every format (a read checks the body only for format 3, whose
    checksum is missing). ``feast-sequence verify`` runs it over every block."""
    try:
        decoded = decode(block)
        if decoded is not None:
            decoded.packed(decoded.count)  # a columnar block rebuilds its members
    except CorruptSequenceError as error:
        return str(error)
    return decoded.incoherence() if decoded is not None else None


def is_unchecked(block: Optional[bytes]) -> bool:
    """Whether a stored block is of format 3, without a checksum."""
    return bool(block) and block[0] == UNCHECKED_FORMAT  # type: ignore[index]


def is_outdated(block: Optional[bytes]) -> bool:
    """Whether a stored block is of an older format (3 or 4): compaction rewrites it as format 5."""
    return bool(block) and block[0] in (UNCHECKED_FORMAT, ROW_FORMAT)  # type: ignore[index]


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
            tag, pos = bc.varint_at(member, pos)
            wire = tag & 7
            if wire == 0:
                _, pos = bc.varint_at(member, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            else:
                size, pos = bc.varint_at(member, pos)
                pos += size
        return pos


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
    return _encode(
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
