"""Compaction: merging a sequence's tail into its compressed blocks (storage/blocks.py), in levels
(storage/levels.py).

Appends only ever touch the tail (scripts.APPEND), so they stay O(log N) and never read the
sequence. Once a tail holds ``compact_after`` events, the writer that noticed compacts it: it reads
a snapshot (the tail and the blocks whose sizes warrant merging it with, one script), merges them
under the sequence semantics in Python, and writes the new block (the base, or a new level) with a
compare-and-set on the sequence's version that also removes exactly the merged tail events and
levels (scripts.COMPACT). Nothing is written between the snapshot and the set, so a
process killed at any point leaves either the old state or the new one, and a lost race (any write
to the sequence meanwhile) only means the tail stays until the next append or compactor run.

Readers merge the blocks and the tail the same way (``served``), so a sequence read before,
during or after a compaction is the same sequence.
"""

from __future__ import annotations

import secrets
import time
from functools import lru_cache
from typing import Any, Generator, List, Optional, Sequence, Set

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import CorruptSequenceError, SequenceStoreError
from feast_sequence.storage import blocks, integrity, levels
from feast_sequence.storage.append import REFUSED, append_header, append_keys
from feast_sequence.storage.evolution import reencoded
from feast_sequence.storage.keys import SequenceKeys, writing_keys
from feast_sequence.storage.redis_io import (
    Access,
    Command,
    ReplicaAcks,
    RetryPolicy,
    RoundTrip,
    evalsha,
)
from feast_sequence.storage.scripts import APPEND, COMPACT, SNAPSHOT

#: COMPACT's replies: merged; the sequence changed since the snapshot; its keys were deleted meanwhile.
COMPACTED, CHANGED, TAIL_GONE = 1, -1, -2

#: How long a version token outlives a writer that read it and died (it goes at the next write anyway):
#: a multi-step writer slower than this between its read and its commit is refused and reads again.
VERSION_LIFETIME_MS = 600_000


@lru_cache(maxsize=16)
def _identity_length(fields: int) -> blocks.IdentityLength:
    return blocks.IdentityLength(fields)


class Served:
    """One entity's served events: the members back to back (one protobuf parse decodes them all)
    and their count; ``members()`` splits them, for the rare per-event decode. ``parts`` are what
    they are joined from (storage/sequence_columns.py reads a columnar block's part as columns)."""

    def __init__(self, data: Optional[bytes], count: int, parts: Sequence[Any] = (), corrupt: bool = False):
        self._data = data  # None: joined from ``parts`` when first asked for
        self.count = count
        self._parts = parts  # lists of members, or (Block, k): what ``data`` was joined from
        self.corrupt = corrupt  # its block is damaged: served without events (storage/read.py)

    @property
    def data(self) -> bytes:
        if self._data is None:
            pieces = [part[0].packed(part[1]) if isinstance(part, tuple) else b"".join(part) for part in self._parts]
            self._data = b"".join(pieces)
        return self._data

    @property
    def parts(self) -> Sequence[Any]:
        return self._parts

    def members(self) -> List[bytes]:
        out: List[bytes] = []
        for part in self._parts:
            if isinstance(part, tuple):
                block, k = part
                out.extend(block.events().members[:k])
            else:
                out.extend(part)
        return out

    @classmethod
    def of(cls, members: Sequence[bytes]) -> "Served":
        return cls(b"".join(members), len(members), (members,))


CORRUPT = Served(b"", 0, (), corrupt=True)


def served(reply: Sequence[Any], identity_fields: int) -> Served:
    """One sequence's served events from its ``scripts.READ`` reply, newest first.

    Without a block the reply is the answer. With blocks, the merge needs no per-event work when,
    without dedup_by, the tail and the blocks hold disjoint time ranges (the usual case: each
    compaction's events are newer than the blocks before it): their packed members are then
    concatenated, newest range first."""
    if len(reply) == 2:
        return Served.of(reply[1])
    tail = reply[1]
    oldest = None if reply[2] == b"-inf" else int(reply[2])
    limit = int(reply[3])
    stored = [reply[0], *(reply[4] if len(reply) > 4 else ())]
    decoded = sorted((d for d in map(blocks.decode, (b for b in stored if b)) if d is not None), key=_newest_first)
    tail_members = tail[0::2]
    if not decoded:
        return Served.of(tail_members[:limit])
    if _ranges_apart(decoded, identity_fields, int(float(tail[-1])) if tail_members else None):
        first = tail_members[:limit]
        parts: List[Any] = [first]
        count = len(first)
        for block in decoded:
            k = block.within(oldest, limit - count)
            parts.append((block, k))
            count += k
            if k < block.count:  # the window or the limit ends here
                break
        return Served(None, count, parts)
    events = blocks.tail_events(tail, _identity_length(identity_fields))
    return Served.of(levels.merged([events, *(b.events() for b in decoded)], limit, oldest).members)


def _newest_first(block: blocks.Block) -> int:
    return -block.newest


def _ranges_apart(decoded: Sequence[blocks.Block], identity_fields: int, oldest_tail_us: Optional[int]) -> bool:
    """Whether the tail (oldest event at ``oldest_tail_us``, None if empty) and the blocks, newest
    first, simply follow one another (``blocks.goes_in_front``, block after block)."""
    if oldest_tail_us is not None and not blocks.goes_in_front(decoded[0], identity_fields, oldest_tail_us):
        return False
    for newer, older in zip(decoded, decoded[1:]):
        if not blocks.goes_in_front(older, identity_fields, int(newer.scores[-1])):
            return False
    return True


def snapshot_commands(keys: Sequence[SequenceKeys], whole_block: bool = False) -> List[Command]:
    """What a multi-step writer reads first: each sequence's tail, version and the blocks to merge
    it with (scripts.SNAPSHOT). ``whole_block``: the writer rewrites every block, so it gets them
    all, and sequences of blocks without a tail get a version as well."""
    flag = "1" if whole_block else "0"
    plan = levels.plan_args()
    return [evalsha(SNAPSHOT, writing_keys(k), (secrets.token_hex(8), VERSION_LIFETIME_MS, flag, *plan)) for k in keys]


def snapshot_blocks(snapshot: Sequence[Any]) -> levels.Stored:
    """The blocks a SNAPSHOT reply holds."""
    return levels.Stored(snapshot[0] or None, levels.pairs(snapshot[3]))


def compact_command(
    settings: SequenceSettings, keys: SequenceKeys, snapshot: Sequence[Any], now_us: int, reencode: bool = False
) -> Command:
    """The compare-and-set that merges a snapshot's tail and blocks into one block, the base or a new
    level (as SNAPSHOT planned); with ``reencode``, every event re-encoded under ``settings`` first
    (``rewrite``)."""
    base, tail_reply, version, level_reply, target = snapshot
    fields = len(settings.dedup_by)
    tail = blocks.tail_events(tail_reply, _identity_length(fields))
    oldest = now_us - settings.ttl_us if settings.ttl_us else None
    merged_levels = levels.pairs(level_reply)
    parts = [tail, *(blocks.decode_events(b) for b in merged_levels.values())]
    decoded = blocks.decode(base)
    name = b""
    if reencode:  # every block is read (whole_block), so the merge goes to the base
        old = decoded.events() if decoded is not None else blocks.EMPTY
        merged = levels.merged([reencoded(settings, p) for p in (*parts, old)], settings.max_length, oldest)
        new_block = blocks.encode(merged) if len(merged) else b""
    else:
        fresh = levels.merged(parts, settings.max_length, oldest)
        if decoded is not None and len(fresh) and blocks.goes_in_front(decoded, fields, fresh.scores[-1]):
            new_block = blocks.prepend(decoded, fresh, settings.max_length, oldest)
        else:
            merged = fresh
            if decoded is not None:
                merged = levels.merged([fresh, decoded.events()], settings.max_length, oldest)
            new_block = blocks.encode(merged) if len(merged) else b""
            if target == b"level" and len(merged):  # the base was not read: ``merged`` is ``fresh``
                name = levels.level_name(merged)
    args: List[Any] = [target, blocks.header_of(base), new_block, name, settings.ttl_us or 0, fields, version]
    args += (len(merged_levels), *merged_levels)
    for score, member in zip(tail.scores, tail.members):
        args += (score, member)
    return evalsha(COMPACT, writing_keys(keys), args)


def compact(
    settings: SequenceSettings,
    keys: Sequence[SequenceKeys],
    retry: RetryPolicy,
    acks: ReplicaAcks,
    now_us: Optional[int] = None,
) -> Generator[RoundTrip, List[Any], int]:
    """Compact the given sequences (two round trips); returns how many were compacted. A sequence
    with an empty tail is compacted only to rewrite a format 3 or 4 block as format 5 (columns, checksum);
    one whose block is corrupt is left as it is, counted and logged (storage/integrity.py)."""
    if not keys:
        return 0
    snapshots = yield RoundTrip(snapshot_commands(keys), _what(settings, "reading", len(keys)), retry)
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    commands: List[Command] = []
    for k, snapshot in zip(keys, snapshots):
        if not (snapshot[1] or blocks.is_outdated(snapshot[0])):  # (base, tail, ...)
            continue
        try:
            commands.append(compact_command(settings, k, snapshot, now_us))
        except CorruptSequenceError as error:
            integrity.report(integrity.corrupt(settings, k[2], error), "compaction", "It was left uncompacted.")
    if not commands:
        return 0
    replies = yield RoundTrip(commands, _what(settings, "writing", len(commands)), retry, acks, Access.WRITE)
    return sum(1 for r in replies if r == COMPACTED)


def rewrite(
    settings: SequenceSettings,
    keys: Sequence[SequenceKeys],
    retry: RetryPolicy,
    acks: ReplicaAcks,
    attempts: int = 10,
) -> Generator[RoundTrip, List[Any], int]:
    """Re-encode every stored event of the given sequences, block and tail, under ``settings``
    (``evolution.reencoded``) into one block, by compaction's compare-and-set; a sequence that
    changed meanwhile is read again. `feast apply` runs it when a view's fields change, so stored
    events keep the bytes that identity and ties compare. Returns how many were rewritten."""
    pending, rewritten = list(keys), 0
    for _ in range(attempts):
        snapshots = yield RoundTrip(
            snapshot_commands(pending, whole_block=True), _what(settings, "re-encoding", len(pending)), retry
        )
        now_us = time.time_ns() // 1000
        stored = [(k, s) for k, s in zip(pending, snapshots) if s[0] or s[1] or s[3]]
        if not stored:
            return rewritten
        commands = [compact_command(settings, k, s, now_us, reencode=True) for k, s in stored]
        replies = yield RoundTrip(commands, _what(settings, "re-encoding", len(commands)), retry, acks, Access.WRITE)
        rewritten += sum(1 for r in replies if r == COMPACTED)
        pending = [k for (k, _), r in zip(stored, replies) if r == CHANGED]
        if not pending:
            return rewritten
    raise SequenceStoreError(
        f"Sequence view '{settings.view_name}': {len(pending)} sequence(s) kept changing while their events "
        f"were re-encoded for the new definition ({attempts} attempts). Apply again."
    )


def absorb_command(settings: SequenceSettings, keys: SequenceKeys, stored: levels.Stored) -> Command:
    """Move a sequence's blocks' events, merged, back into the tail (one APPEND; the blocks are
    deleted if unchanged). A correction needs it: only the tail can have a time range replaced
    inside Redis."""
    try:
        events = stored.events(settings.max_length)
    except CorruptSequenceError as error:
        raise integrity.corrupt(settings, keys[2], error) from error
    args = append_header(settings, None, stored.signature())
    if settings.dedup_by:
        for score, member, identity in zip(events.scores, events.members, events.identities()):
            args += (score, member, identity)
    else:
        for score, member in zip(events.scores, events.members):
            args += (score, member)
    return evalsha(APPEND, append_keys(keys), args)


def _what(settings: SequenceSettings, doing: str, count: int) -> str:
    return f"{doing} {count} sequence(s) of '{settings.view_name}' to compact"


def resend_refused(
    settings: SequenceSettings,
    commands: Sequence[Command],
    replies: Sequence[Any],
    retry: RetryPolicy,
    acks: ReplicaAcks,
    attempts: int = 10,
) -> Generator[RoundTrip, List[Any], List[Any]]:
    """Finish a correction's APPEND calls that were refused beside a block: move each such block
    back into its tail, then send the entity's calls again, from the refused one on (appends are
    idempotent, and a later call must not be undone by the range removal of an earlier one).
    Returns the final reply of every command."""
    final = list(replies)
    pending = list(range(len(commands)))
    for _ in range(attempts):
        refused: Set[SequenceKeys] = set()
        again: List[int] = []
        for position in pending:
            keys = _keys_of(commands[position])
            if final[position] == REFUSED:
                refused.add(keys)
            if keys in refused:
                again.append(position)
        if not refused:
            return final
        ordered = sorted(refused)
        replies = yield RoundTrip(levels.stored_commands(ordered), _what(settings, "reading", len(ordered)), retry)
        absorbs = [absorb_command(settings, k, b) for k, b in zip(ordered, levels.stored_blocks(replies)) if b]
        if absorbs:
            yield RoundTrip(absorbs, _what(settings, "expanding", len(absorbs)), retry, acks, Access.WRITE)
        what = f"correcting {len(ordered)} sequence(s)"
        resent = yield RoundTrip([commands[p] for p in again], what, retry, acks, Access.WRITE)
        for position, reply in zip(again, resent):
            final[position] = reply
        pending = again
    raise SequenceStoreError(
        f"Sequence view '{settings.view_name}': a correction kept meeting freshly compacted blocks after "
        f"{attempts} attempts; nothing of the refused entities' calls was lost. Run it again."
    )


def _keys_of(command: Command) -> SequenceKeys:
    return command[3], command[4], command[5]
