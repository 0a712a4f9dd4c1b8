"""The columnar body of a format 5 block (storage/blocks.py): stored events split into one column per
protobuf field, each encoded for its wire type, and rebuilt byte for byte. Pure numpy, no I/O.

A stored event is a run of protobuf elements (storage/codec.py); the block needs no schema to
split it. Every member is parsed element by element, all members at once (one numpy pass per
element position). A member's *shape* is its list of field tags and how many leading elements form
its identity (``dedup_by``); a block stores its distinct shapes once and, when there is more than one
(a field added to the schema later, or a timestamp with microseconds beside whole seconds), a shape
number per event. A field's column holds the values of the events whose shape has that field, in
event order:

- varint fields: the seconds or microseconds of the event's score when they are that (the
  timestamp costs nothing beyond the scores), else zigzag deltas or plain values, as varints,
  whichever is smaller;
- 4- and 8-byte fields (floats, doubles): byte-shuffled (all first bytes, then all second bytes...);
- length-delimited fields (strings, bytes): a per-block dictionary in order of first appearance
  (its entries joined by NUL bytes when none holds one, so a read splits them in one call; else
  each with its length), then one varint reference per event (0: the next new entry).

Scores are the first score then the (non-negative) gaps, as varints. Each column is compressed
with zstd on its own. ``rebuild`` turns the columns back into the members' exact bytes; ``encode``
checks that it does before it returns, and returns None when it does not (a member that is not
canonical protobuf, say), so the caller stores those events row-wise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

# Column encodings (the byte after a column's tag in the layout section).
PLAIN, DELTA, SECONDS, MICROS, SHUFFLED, DICTIONARY, JOINED_DICTIONARY = range(7)
_WIRE_VARINT, _WIRE_FIXED64, _WIRE_BYTES, _WIRE_FIXED32 = 0, 1, 2, 5
_FIXED_WIDTH = {_WIRE_FIXED64: 8, _WIRE_FIXED32: 4}
_MAX_ELEMENTS = 64  # more elements in one event than any view has fields: stored row-wise
_U64 = np.uint64
_MICROS = 1_000_000


class Unfit(Exception):
    """These events do not go into columns (the block is stored row-wise); never leaves blocks.py."""


# --- varints, vectorized -------------------------------------------------------------------------


_VARINT_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=_U64)


def varint_lengths(values: np.ndarray) -> np.ndarray:
    """The length of each uint64 value's varint."""
    lengths: np.ndarray = np.searchsorted(_VARINT_LIMITS, values.astype(_U64, copy=False), side="right") + 1
    return lengths


def varint_grid(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Each uint64 value as a protobuf varint, one row each, padded to the longest; and which
    bytes of each row are its varint."""
    values = values.astype(_U64, copy=False)
    lengths = varint_lengths(values)
    widest = int(lengths.max()) if len(values) else 0
    shifts = (np.arange(widest, dtype=_U64) * _U64(7))[None, :]
    grid = ((values[:, None] >> shifts) & _U64(0x7F)).astype(np.uint8)
    positions = np.arange(widest)[None, :]
    grid |= (positions < (lengths - 1)[:, None]).astype(np.uint8) << np.uint8(7)
    return grid, positions < lengths[:, None]


def varint_bytes(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Each uint64 value as a protobuf varint: the bytes back to back, and each one's length."""
    grid, used = varint_grid(values)
    return grid[used], used.sum(axis=1, dtype=np.int64)


def read_varints(data: np.ndarray, count: int, offset: int = 0) -> Tuple[np.ndarray, int]:
    """``count`` varints back to back from ``offset`` of ``data`` (uint8): their values, and the
    offset after the last. Raises ValueError when they are not there."""
    if not count:
        return np.zeros(0, dtype=_U64), offset
    short = data[offset : offset + count]
    if len(short) == count and int(short.max()) < 0x80:  # one byte each (references, small ints)
        return short.astype(_U64), offset + count
    ends = np.flatnonzero(data[offset:] < 0x80)[:count] + 1
    if len(ends) < count:
        raise ValueError(f"{count} varints expected, {len(ends)} found")
    starts = np.concatenate(([0], ends[:-1]))
    lengths = ends - starts
    if int(lengths.max()) > 10:
        raise ValueError("a varint longer than 10 bytes")
    total = int(ends[-1])
    shifts = ((np.arange(total) - np.repeat(starts, lengths)) * 7).astype(_U64)
    parts = (data[offset : offset + total] & 0x7F).astype(_U64) << shifts
    return np.add.reduceat(parts, starts), offset + total


def varints_in(data: bytes) -> List[int]:
    """The varints that fill ``data``, as Python integers (a block's layout: a few dozen), in one
    C-level parse; raises ValueError when ``data`` ends inside one."""
    try:
        return list(_packed_varints().FromString(b"\x0a%s%s" % (encode_varints(len(data)), data)).f8)
    except DecodeError as error:
        raise ValueError(f"varints expected ({error})") from error


def varints_filling(data: bytes, count: int, offset: int = 0) -> np.ndarray:
    """The ``count`` varints that fill ``data`` from ``offset`` to its end, as uint64 (what
    ``read_varints`` gives, with its end checked). For a small block's sections and columns: one
    C-level protobuf parse of them as a packed field, where ``read_varints`` costs a dozen numpy
    calls of fixed cost. Raises ValueError when they are not exactly that many varints."""
    size = len(data) - offset
    if size == count:  # one byte each (references, small integers, gaps of a second)
        values = np.frombuffer(data, dtype=np.uint8, count=count, offset=offset)
        if count and int(values.max()) >= 0x80:
            raise ValueError(f"{count} varints expected in {size} bytes")
        return values.astype(_U64)
    if size < count or not count:
        raise ValueError(f"{count} varints expected in {size} bytes")
    try:
        packed = _packed_varints().FromString(b"\x0a%s%s" % (encode_varints(size), data[offset:] if offset else data))
    except DecodeError as error:
        raise ValueError(f"{count} varints expected ({error})") from error
    if len(packed.f8) != count:
        raise ValueError(f"{count} varints expected, {len(packed.f8)} found")
    return np.array(packed.f8, dtype=_U64)


def _packed_varints() -> Any:
    """A message of one packed repeated uint64 field, number 1 (tag 8): ``varints_filling``'s parser."""
    return _message_class((1 << 3 | _WIRE_VARINT,))


def encode_varints(*values: int) -> bytes:
    """Non-negative integers as protobuf varints, back to back (a few: a section's sizes, a layout)."""
    out = bytearray()
    for value in values:
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def _varints_at(buf: np.ndarray, pos: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One varint starting at each position of ``buf`` (padded with 10 zero bytes): values and
    lengths (0 where none ends within 10 bytes)."""
    values = np.zeros(len(pos), dtype=_U64)
    lengths = np.zeros(len(pos), dtype=np.int64)
    done = np.zeros(len(pos), dtype=bool)
    last = len(buf) - 1
    for i in range(10):
        live = ~done
        if not live.any():
            break
        byte = buf[np.minimum(pos[live] + i, last)]
        values[live] |= (byte & 0x7F).astype(_U64) << _U64(7 * i)
        ending = np.zeros(len(pos), dtype=bool)
        ending[live] = byte < 0x80
        lengths[ending] = i + 1
        done |= ending
    return values, lengths


def zigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.int64, copy=False)
    return ((v << 1) ^ (v >> 63)).view(_U64)


def unzigzag(values: np.ndarray) -> np.ndarray:
    z = values.astype(_U64, copy=False)
    signed: np.ndarray = (z >> _U64(1)).view(np.int64) ^ -((z & _U64(1)).view(np.int64))
    return signed


def _scatter(out: np.ndarray, destinations: np.ndarray, flat: np.ndarray, lengths: np.ndarray) -> None:
    """Copy runs of ``flat`` (back to back, of ``lengths``) to ``out`` at ``destinations``."""
    if not len(flat):
        return
    sources = np.cumsum(lengths) - lengths
    out[np.repeat(destinations - sources, lengths) + np.arange(len(flat))] = flat


def _gather(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Runs of ``flat`` at ``starts`` of ``lengths``, back to back."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.uint8)
    targets = np.cumsum(lengths) - lengths
    return flat[np.repeat(starts - targets, lengths) + np.arange(total)]


# --- columns -------------------------------------------------------------------------------------


@dataclass
class Column:
    """One field's values, for the events whose shape has it (``events``, ascending positions).

    ``values``: varint fields, the raw uint64 varint values (zigzag for signed integers, as
    protobuf's sint64 stores them); 4- and 8-byte fields, a (n, width) uint8 array of the
    little-endian bytes (``.view('<f4')`` of it gives floats); length-delimited fields, indices
    into ``dictionary`` (the distinct values, bytes)."""

    tag: int
    encoding: int
    events: np.ndarray
    values: np.ndarray
    dictionary: Optional[List[bytes]] = None
    joined: Optional[bytes] = None  # the dictionary's entries joined by NUL bytes, when stored so

    def texts(self) -> List[str]:
        """The dictionary's entries as UTF-8 text, decoded at once when stored joined."""
        if self.joined is not None:
            return self.joined.decode("utf-8").split("\x00") if self.dictionary else []
        return [entry.decode("utf-8") for entry in self.dictionary or []]

    @property
    def field_number(self) -> int:
        return self.tag >> 3

    @property
    def wire_type(self) -> int:
        return self.tag & 7

    def element_grid(self) -> Tuple[np.ndarray, np.ndarray]:
        """Each value as stored after its tag, one row each, and which bytes of a row are used."""
        wire = self.wire_type
        if wire == _WIRE_VARINT:
            return varint_grid(self.values)
        if wire in _FIXED_WIDTH:
            return self.values, np.ones(self.values.shape, dtype=bool)
        entries = self.dictionary or []
        sizes = np.fromiter(map(len, entries), dtype=np.int64, count=len(entries))
        prefix, prefix_used = varint_grid(sizes.astype(_U64))
        width = int(sizes.max()) if len(entries) else 0
        text = np.zeros((len(entries), width), dtype=np.uint8)
        text_used = np.arange(width)[None, :] < sizes[:, None]
        text[text_used] = np.frombuffer(b"".join(entries), dtype=np.uint8)
        # Each entry's length varint then its bytes, used bytes first in every row.
        grid = np.concatenate((prefix, text), axis=1)
        used = np.concatenate((prefix_used, text_used), axis=1)
        if prefix.shape[1] > 1:  # an entry of 128 bytes or more: its length varint is not one byte
            order = np.argsort(~used, axis=1, kind="stable")
            grid, used = np.take_along_axis(grid, order, axis=1), np.take_along_axis(used, order, axis=1)
        index = self.values.astype(np.int64)
        return grid[index], used[index]

    def element_bytes(self) -> Tuple[np.ndarray, np.ndarray]:
        """Each value as stored after its tag: bytes back to back, and each one's length."""
        wire = self.wire_type
        if wire == _WIRE_VARINT:
            return varint_bytes(self.values)
        if wire in _FIXED_WIDTH:
            width = _FIXED_WIDTH[wire]
            return self.values.reshape(-1), np.full(len(self.values), width, dtype=np.int64)
        entries = self.dictionary or []
        sizes = np.fromiter(map(len, entries), dtype=np.int64, count=len(entries))
        prefix, prefix_lengths = varint_bytes(sizes.astype(_U64))
        whole = np.frombuffer(b"".join(entries), dtype=np.uint8)
        # Each dictionary entry as an element body (length varint + bytes), then gathered per event.
        entry_lengths = prefix_lengths + sizes
        flat = np.empty(int(entry_lengths.sum()), dtype=np.uint8)
        entry_starts = np.cumsum(entry_lengths) - entry_lengths
        _scatter(flat, entry_starts, prefix, prefix_lengths)
        _scatter(flat, entry_starts + prefix_lengths, whole, sizes)
        index = self.values.astype(np.int64)
        lengths = entry_lengths[index]
        return _gather(flat, entry_starts[index], lengths), lengths


class StoredColumn(NamedTuple):
    """A column as stored (``payload``'s bytes, after decompression), not yet decoded (a tuple: a
    block makes one per column on every cold read, a frozen dataclass costs three times as much)."""

    tag: int
    encoding: int
    data: bytes
    scores: np.ndarray  # the block's
    events: np.ndarray


class LazyColumns(Mapping[int, Column]):
    """Columns by tag, each decoded on first access (a read decodes only the fields it serves), or
    beforehand, with the same column of other blocks (``pending`` and ``provide``, see ``columns_from``)."""

    def __init__(self, stored: Mapping[int, StoredColumn], decode: Callable[[StoredColumn], Column]):
        self._loaders = stored
        self._decode = decode
        self._loaded: Dict[int, Column] = {}

    def __getitem__(self, tag: int) -> Column:
        column: Optional[Column] = self.get(tag)
        if column is None:
            raise KeyError(tag)
        return column

    def get(self, tag: int, default: Any = None) -> Any:  # Mapping's, without its try/except frame
        column = self._loaded.get(tag)
        if column is None:
            stored = self._loaders.get(tag)
            if stored is None:
                return default
            column = self._loaded[tag] = self._decode(stored)
        return column

    def pending(self, tag: int) -> Optional[StoredColumn]:
        """Field ``tag``'s stored column if it is there and not decoded yet."""
        return None if tag in self._loaded else self._loaders.get(tag)

    def provide(self, tag: int, column: Column) -> None:
        """Field ``tag``'s column, decoded by ``columns_from`` (what ``column_from`` gives)."""
        self._loaded.setdefault(tag, column)

    def __iter__(self) -> Iterator[int]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


@dataclass
class Columns:
    """A block's events as columns: scores (int64, newest first), shapes, each event's shape, and
    one ``Column`` per field tag."""

    scores: np.ndarray
    shapes: List[Tuple[int, Tuple[int, ...]]]  # (identity elements, tags in order)
    shape_of: np.ndarray  # per event, an index into shapes
    columns: Mapping[int, Column]


@dataclass
class Members:
    """Members rebuilt from columns: the bytes back to back, each one's length and identity length."""

    packed: bytes
    lengths: np.ndarray
    identity_lengths: np.ndarray


_GRID_LIMIT = 1 << 24  # bytes of padded rows a one-shape rebuild may use; beyond, the general path


def rebuild(columns: Columns) -> Members:
    """The exact member bytes the columns came from (see ``split``)."""
    if len(columns.shapes) == 1:
        members = _rebuild_one_shape(columns)
        if members is not None:
            return members
    return _rebuild_any(columns)


def _rebuild_one_shape(columns: Columns) -> Optional[Members]:
    """Every event has the same fields in the same order: each field's elements as padded rows
    side by side, then the used bytes row by row are the members (a few array operations)."""
    identity, tags = columns.shapes[0]
    count = len(columns.scores)
    grids, used = [], []
    for tag in tags:
        tag_bytes, _ = varint_bytes(np.array([tag], dtype=_U64))
        grids.append(np.broadcast_to(tag_bytes, (count, len(tag_bytes))))
        used.append(np.ones((count, len(tag_bytes)), dtype=bool))
        grid, mask = columns.columns[tag].element_grid()
        grids.append(grid)
        used.append(mask)
    if count * sum(g.shape[1] for g in grids) > _GRID_LIMIT:
        return None
    whole, kept = np.concatenate(grids, axis=1), np.concatenate(used, axis=1)
    lengths = kept.sum(axis=1, dtype=np.int64)
    identity_lengths = np.zeros(count, dtype=np.int64)
    if identity:
        identity_lengths = np.concatenate(used[: 2 * identity], axis=1).sum(axis=1, dtype=np.int64)
    return Members(whole[kept].tobytes(), lengths, identity_lengths)


def _rebuild_any(columns: Columns) -> Members:
    count = len(columns.scores)
    widest = max((len(tags) for _, tags in columns.shapes), default=0)
    slot_of: Dict[int, np.ndarray] = {}  # per tag, the element position of that field in each shape
    for tag in columns.columns:
        slot_of[tag] = np.array([tags.index(tag) if tag in tags else -1 for _, tags in columns.shapes], dtype=np.int64)
    sizes = np.zeros((count, max(widest, 1)), dtype=np.int64)
    pieces = []
    for tag, column in columns.columns.items():
        tag_bytes, _ = varint_bytes(np.array([tag], dtype=_U64))
        flat, lengths = column.element_bytes()
        slots = slot_of[tag][columns.shape_of[column.events]]
        sizes[column.events, slots] = len(tag_bytes) + lengths
        pieces.append((column.events, slots, tag_bytes, flat, lengths))
    element_ends = np.cumsum(sizes, axis=1)
    member_lengths = element_ends[:, -1] if count else np.zeros(0, dtype=np.int64)
    member_starts = np.cumsum(member_lengths) - member_lengths
    out = np.empty(int(member_lengths.sum()), dtype=np.uint8)
    for events, slots, tag_bytes, flat, lengths in pieces:
        at = member_starts[events] + element_ends[events, slots] - sizes[events, slots]
        out[at[:, None] + np.arange(len(tag_bytes))] = tag_bytes
        _scatter(out, at + len(tag_bytes), flat, lengths)
    identity_elements = np.array([k for k, _ in columns.shapes], dtype=np.int64)[columns.shape_of]
    with_identity = identity_elements > 0
    identity_lengths = np.zeros(count, dtype=np.int64)
    identity_lengths[with_identity] = element_ends[with_identity, identity_elements[with_identity] - 1]
    return Members(out.tobytes(), member_lengths, identity_lengths)


def split(scores: np.ndarray, packed: bytes, lengths: np.ndarray, identity_lengths: np.ndarray) -> Columns:
    """Members (back to back, with their lengths and identity lengths) as columns; raises ``Unfit``
    for members that are not a run of protobuf elements or whose identity is not whole elements.
    The columns may not give the members back (``rebuild`` tells): a block checks that they do."""
    return _split_one_shape(scores, packed, lengths, identity_lengths) or _split_any(
        scores, packed, lengths, identity_lengths
    )


def _split_one_shape(
    scores: np.ndarray, packed: bytes, lengths: np.ndarray, identity_lengths: np.ndarray
) -> Optional[Columns]:
    """The usual block, every event with the fields of the first one: one C-level protobuf parse
    of all the members gives every column. None when the events do not look so."""
    count = len(lengths)
    if not count:
        return None
    first = packed[: int(lengths[0])]
    tags, ends, pos = [], [], 0
    while pos < len(first):
        tag, pos = varint_at(first, pos)
        wire = tag & 7
        if wire == _WIRE_VARINT:
            _, pos = varint_at(first, pos)
        elif wire in _FIXED_WIDTH:
            pos += _FIXED_WIDTH[wire]
        elif wire == _WIRE_BYTES:
            size, pos = varint_at(first, pos)
            pos += size
        else:
            return None
        tags.append(tag)
        ends.append(pos)
    identity = ends.index(int(identity_lengths[0])) + 1 if int(identity_lengths[0]) in ends else 0
    if len(set(tags)) != len(tags) or pos != len(first) or (identity_lengths[0] and not identity):
        return None
    try:
        message = _message_class(tuple(tags)).FromString(packed)
    except DecodeError:
        return None
    if any(len(getattr(message, f"f{tag}")) != count for tag in tags):
        return None
    columns: Dict[int, Column] = {}
    events = np.arange(count)
    for tag in tags:
        if tag & 7 == _WIRE_BYTES:
            columns[tag] = _dictionary_column(tag, events, list(getattr(message, f"f{tag}")))
            message.ClearField(f"f{tag}")
    # What is left serializes as packed repeated fields (tag, length, the values back to back, in
    # field number order): numpy reads each at once, where iterating protobuf's lists would not.
    numbers = {tag >> 3: tag for tag in tags}
    rest = message.SerializeToString()
    data, pos = np.frombuffer(rest, dtype=np.uint8), 0
    while pos < len(rest):
        key, pos = varint_at(rest, pos)
        if key >> 3 not in numbers or key & 7 != _WIRE_BYTES:  # a field the first event lacks
            return None
        size, pos = varint_at(rest, pos)
        tag = numbers[key >> 3]
        wire = tag & 7
        if wire == _WIRE_VARINT:
            varints, end = read_varints(data[: pos + size], count, pos)
            if end != pos + size:
                return None
            columns[tag] = _varint_column(tag, scores, events, varints)
        else:
            width = _FIXED_WIDTH[wire]
            columns[tag] = Column(tag, SHUFFLED, events, data[pos : pos + size].reshape(count, width))
        pos += size
    return Columns(scores, [(identity, tuple(tags))], np.zeros(count, dtype=np.int64), columns)


def varint_at(data: bytes, pos: int) -> Tuple[int, int]:
    """The varint at ``pos`` of ``data`` and the position after it. Bounded, for stored bytes that may
    be damaged: a varint the bytes end inside gives -1 and a position past the end, which the caller
    refuses."""
    value, shift, end = 0, 0, len(data)
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return -1, end + 1


@lru_cache(maxsize=64)
def _message_class(tags: Tuple[int, ...]) -> Any:
    """A message with one repeated field per tag, typed to take its raw values: varints as uint64
    (zigzag left as stored), fixed-width values as fixed32/fixed64, the rest as bytes."""
    types = descriptor_pb2.FieldDescriptorProto
    by_wire = {
        _WIRE_VARINT: types.TYPE_UINT64,
        _WIRE_FIXED64: types.TYPE_FIXED64,
        _WIRE_FIXED32: types.TYPE_FIXED32,
        _WIRE_BYTES: types.TYPE_BYTES,
    }
    name = "Columns_" + "_".join(map(str, tags))
    file_proto = descriptor_pb2.FileDescriptorProto(
        name=f"{name}.proto", package="feast_sequence.block", syntax="proto3"
    )
    message = file_proto.message_type.add(name=name)
    for tag in tags:
        message.field.add(name=f"f{tag}", number=tag >> 3, type=by_wire[tag & 7], label=types.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"feast_sequence.block.{name}"))


def _split_any(scores: np.ndarray, packed: bytes, lengths: np.ndarray, identity_lengths: np.ndarray) -> Columns:
    count = len(lengths)
    buf = np.frombuffer(packed + bytes(11), dtype=np.uint8)
    ends = np.cumsum(lengths, dtype=np.int64)
    starts = ends - lengths
    pos = starts.copy()
    tag_slots: List[np.ndarray] = []  # per element position, each event's tag there (-1: none)
    start_slots: List[np.ndarray] = []
    end_slots: List[np.ndarray] = []
    varint_slots: List[np.ndarray] = []
    identity = np.zeros(count, dtype=np.int64)  # identity elements per event
    identity_found = identity_lengths == 0
    slot = 0
    while True:
        live = np.flatnonzero(pos < ends)
        if not len(live):
            break
        if slot == _MAX_ELEMENTS:
            raise Unfit("too many elements")
        tag, tag_length = _varints_at(buf, pos[live])
        if not tag_length.all():
            raise Unfit("unterminated tag")
        at = pos[live] + tag_length
        wire = (tag & _U64(7)).astype(np.int64)
        value, value_length = _varints_at(buf, at)
        start, end = at.copy(), at + value_length
        for w, width in _FIXED_WIDTH.items():
            fixed = wire == w
            end[fixed] = at[fixed] + width
        text = wire == _WIRE_BYTES
        start[text] = at[text] + value_length[text]
        end[text] = start[text] + value[text].astype(np.int64)
        known = (wire == _WIRE_VARINT) | (wire == _WIRE_FIXED64) | (wire == _WIRE_FIXED32) | text
        broken = (end > ends[live]) | (end <= at - tag_length)
        if not known.all() or not value_length[(wire == _WIRE_VARINT) | text].all() or broken.any():
            raise Unfit("not protobuf elements")
        for kept, fill, got in (
            (tag_slots, -1, tag),
            (start_slots, 0, start),
            (end_slots, 0, end),
            (varint_slots, 0, value),
        ):
            row = np.full(count, fill, dtype=np.int64 if kept is not varint_slots else _U64)
            row[live] = got
            kept.append(row)
        pos[live] = end
        closes = (end - starts[live]) == identity_lengths[live]
        newly = closes & ~identity_found[live]
        identity[live[newly]] = slot + 1
        identity_found[live[newly]] = True
        slot += 1
    if not identity_found.all() or not slot:
        raise Unfit("an identity that is not whole elements")
    tags = np.stack(tag_slots, axis=1)
    value_starts, value_ends = np.stack(start_slots, axis=1), np.stack(end_slots, axis=1)
    varints = np.stack(varint_slots, axis=1)
    shape_rows = np.concatenate((identity[:, None], tags), axis=1)
    if bool((shape_rows == shape_rows[:1]).all()):  # the usual case: one shape
        unique, shape_of = shape_rows[:1], np.zeros(count, dtype=np.int64)
    else:
        unique, shape_of = np.unique(shape_rows, axis=0, return_inverse=True)
    shapes = [(int(r[0]), tuple(int(t) for t in r[1:] if t >= 0)) for r in unique]
    if any(len(set(t)) != len(t) for _, t in shapes):
        raise Unfit("a field twice in one event")
    shape_of = shape_of.reshape(-1).astype(np.int64)
    columns: Dict[int, Column] = {}
    for field_tag in sorted({t for _, ts in shapes for t in ts}):
        rows, slots = np.nonzero(tags == field_tag)
        columns[field_tag] = _column(
            field_tag,
            scores[rows],
            rows,
            varints[rows, slots],
            value_starts[rows, slots],
            value_ends[rows, slots],
            packed,
            buf,
        )
    return Columns(scores, shapes, shape_of, columns)


def _column(
    tag: int,
    scores: np.ndarray,
    events: np.ndarray,
    varints: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    packed: bytes,
    buf: np.ndarray,
) -> Column:
    wire = tag & 7
    if wire == _WIRE_VARINT:
        return _varint_column(tag, scores, events, varints)
    if wire in _FIXED_WIDTH:
        width = _FIXED_WIDTH[wire]
        return Column(tag, SHUFFLED, events, buf[starts[:, None] + np.arange(width)])
    return _dictionary_column(tag, events, [packed[a:b] for a, b in zip(starts.tolist(), ends.tolist())])


def _varint_column(tag: int, scores: np.ndarray, events: np.ndarray, varints: np.ndarray) -> Column:
    for encoding, derive in _DERIVED.items():
        if np.array_equal(varints, derive(scores)):
            return Column(tag, encoding, events, varints)
    smaller = varint_lengths(_delta(varints)).sum() < varint_lengths(varints).sum()
    return Column(tag, DELTA if smaller else PLAIN, events, varints)


def _dictionary_column(tag: int, events: np.ndarray, values: List[bytes]) -> Column:
    import pandas  # its hashing of many short values is C; loaded only by the writers that need it

    ids, distinct = pandas.factorize(np.array(values, dtype=object), sort=False)
    entries = list(distinct)
    joined = b"\x00".join(entries)
    encoding = JOINED_DICTIONARY if joined.count(0) == len(entries) - 1 else DICTIONARY
    return Column(tag, encoding, events, ids.astype(_U64), entries)


_DERIVED: Dict[int, Callable[[np.ndarray], np.ndarray]] = {
    SECONDS: lambda scores: zigzag(scores // _MICROS),
    MICROS: lambda scores: zigzag(scores % _MICROS),
}


def _delta(varints: np.ndarray) -> np.ndarray:
    signed = unzigzag(varints)
    return zigzag(np.diff(signed, prepend=np.int64(0)))


def payload(column: Column) -> bytes:
    """A column's stored bytes (before compression); the events it covers are known from the shapes."""
    if column.encoding in _DERIVED:
        return b""
    if column.encoding == PLAIN:
        return varint_bytes(column.values)[0].tobytes()
    if column.encoding == DELTA:
        return varint_bytes(_delta(column.values))[0].tobytes()
    if column.encoding == SHUFFLED:
        return np.ascontiguousarray(column.values.T).tobytes()
    entries = column.dictionary or []
    references = varint_bytes(_references(column.values))[0].tobytes()
    if column.encoding == JOINED_DICTIONARY:
        blob = b"\x00".join(entries)
        head, _ = varint_bytes(np.array([len(entries), len(blob)], dtype=_U64))
        return b"".join((head.tobytes(), blob, references))
    sizes, _ = varint_bytes(np.fromiter(map(len, entries), dtype=_U64, count=len(entries)))
    head, _ = varint_bytes(np.array([len(entries)], dtype=_U64))
    return b"".join((head.tobytes(), sizes.tobytes(), *entries, references))


def _references(index: np.ndarray) -> np.ndarray:
    """Dictionary indices as stored: entries are in order of first use, so an event that uses a new
    entry stores 0 (it is the next one), and one that reuses an entry stores its index + 1. Events
    that never repeat a value then cost nothing here."""
    signed = index.astype(np.int64)
    seen = np.maximum.accumulate(np.concatenate(([-1], signed[:-1])))
    return np.where(signed > seen, 0, signed + 1).astype(_U64)


def _indices(references: np.ndarray) -> np.ndarray:
    if not references.any():  # every event a new entry: no value repeats
        return np.arange(len(references), dtype=_U64)
    new = references == 0
    return np.where(new, np.cumsum(new) - 1, references.astype(np.int64) - 1).astype(_U64)


def column_from(tag: int, encoding: int, data: bytes, scores: np.ndarray, events: np.ndarray) -> Column:
    """A column back from its stored bytes (``payload``); raises ValueError when they do not fit."""
    count = len(events)
    if encoding in _DERIVED:
        values = _DERIVED[encoding](scores if count == len(scores) else scores[events])  # events: ascending
    elif encoding in (PLAIN, DELTA):
        values = varints_filling(data, count)
        if encoding == DELTA:
            values = zigzag(np.cumsum(unzigzag(values)))
    elif encoding == SHUFFLED:
        width = _FIXED_WIDTH.get(tag & 7, 0)
        if not width or len(data) != width * count:
            raise ValueError(f"{len(data)} bytes for {count} values of field tag {tag}")
        values = np.frombuffer(data, dtype=np.uint8).reshape(width, count).T.copy()
    elif encoding in (DICTIONARY, JOINED_DICTIONARY):
        size, offset = varint_at(data, 0)
        blob = None
        if encoding == JOINED_DICTIONARY:
            blob_size, offset = varint_at(data, offset)
            end = offset + blob_size
            if size < 0 or blob_size < 0 or end > len(data):
                raise ValueError(f"a dictionary of {blob_size} bytes where {len(data) - offset} are left")
            blob = data[offset:end]
            entries = blob.split(b"\x00") if size else []
            if len(entries) != size:
                raise ValueError(f"{len(entries)} dictionary entries, {size} expected")
        else:
            if size < 0:
                raise ValueError("a dictionary size the column ends inside")
            sizes, offset = read_varints(np.frombuffer(data, dtype=np.uint8), size, offset)
            bounds = np.concatenate(([offset], offset + np.cumsum(sizes.astype(np.int64))))
            entries = [data[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]
            end = int(bounds[-1])
            if end > len(data):
                raise ValueError(f"dictionary entries of {end - offset} bytes where {len(data) - offset} are left")
        values = _indices(varints_filling(data, count, end))
        if count and int(values.max()) >= size:
            raise ValueError(f"dictionary index beyond its {size} entries")
        return Column(tag, encoding, events, values, entries, blob)
    else:
        raise ValueError(f"unknown column encoding {encoding}")
    return Column(tag, encoding, events, values)


def columns_from(stored: Sequence[StoredColumn]) -> Optional[List[Column]]:
    """``column_from`` of each column of one field tag and encoding (that field in the blocks of a
    request), with one numpy pass over all their varints instead of one per column: a read of many
    sequences then costs a few calls per field, not a few per field and block. None when the
    columns are not all as ``payload`` writes them (a non-canonical varint, say): ``column_from`` of
    each then gives each column or its error."""
    if not stored:
        return []
    encoding = stored[0].encoding
    counts = np.array([len(c.events) for c in stored], dtype=np.int64)
    if encoding in (PLAIN, DELTA):
        values = _joined_varints([c.data for c in stored], counts)
        if values is None:
            return None
        if encoding == DELTA:
            values = zigzag(_cumsum_per_run(unzigzag(values), counts))
        return [Column(c.tag, encoding, c.events, v) for c, v in zip(stored, _runs(values, counts))]
    if encoding != JOINED_DICTIONARY:  # the rest costs a call or two per column anyway
        return [column_from(c.tag, c.encoding, c.data, c.scores, c.events) for c in stored]
    heads, references = [], []
    for column in stored:
        size, at = varint_at(column.data, 0)
        blob_size, at = varint_at(column.data, at)
        if size < 0 or blob_size < 0 or at + blob_size > len(column.data):
            return None
        heads.append((size, column.data[at : at + blob_size]))
        references.append(column.data[at + blob_size :])
    values = _joined_varints(references, counts)
    if values is None:
        return None
    new = values == 0
    firsts = _cumsum_per_run(new.astype(np.int64), counts) - 1
    index = np.where(new, firsts, values.astype(np.int64) - 1)
    sizes = np.array([size for size, _ in heads], dtype=np.int64)
    if len(index) and bool((index >= np.repeat(sizes, counts)).any()):
        return None
    out = []
    for column, (size, blob), v in zip(stored, heads, _runs(index.astype(_U64), counts)):
        entries = blob.split(b"\x00") if size else []
        if len(entries) != size:
            return None
        out.append(Column(column.tag, encoding, column.events, v, entries, blob))
    return out


def _joined_varints(datas: Sequence[bytes], counts: np.ndarray) -> Optional[np.ndarray]:
    """The varints of each of ``datas`` (``counts[i]`` each, filling it exactly), read at once;
    None unless every one is canonical and each data holds exactly its count."""
    total = int(counts.sum())
    joined = np.frombuffer(b"".join(datas), dtype=np.uint8)
    try:
        values, end = read_varints(joined, total)
    except ValueError:
        return None
    if end != len(joined):
        return None
    sizes = np.fromiter(map(len, datas), dtype=np.int64, count=len(datas))
    # Canonical varints have the lengths their values give: then each data's varints end at its end.
    ends = np.cumsum(varint_lengths(values))
    bounds = np.cumsum(counts) - 1
    if not np.array_equal(ends[bounds[counts > 0]], np.cumsum(sizes)[counts > 0]) or bool((sizes[counts == 0]).any()):
        return None
    return values


def _cumsum_per_run(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The running sum of ``values`` restarting at each run of ``counts`` (wrapping as int64 does)."""
    total = np.cumsum(values)
    starts = np.cumsum(counts) - counts
    before = np.where(starts > 0, total[np.maximum(starts - 1, 0)] if len(total) else 0, 0)
    restarted: np.ndarray = total - np.repeat(before.astype(total.dtype), counts)
    return restarted


def _runs(values: np.ndarray, counts: np.ndarray) -> List[np.ndarray]:
    return np.split(values, np.cumsum(counts)[:-1])


def events_of(columns_shapes: Sequence[Tuple[int, Tuple[int, ...]]], shape_of: np.ndarray, tag: int) -> np.ndarray:
    """The events (ascending) whose shape has field ``tag``."""
    having = np.array([tag in tags for _, tags in columns_shapes], dtype=bool)
    return np.flatnonzero(having[shape_of])
