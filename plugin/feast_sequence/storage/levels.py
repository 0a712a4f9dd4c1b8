"""A sequence's compacted events in levels, so that a compaction rewrites O(new events), not
O(max_length) (docs/storage-layout.md, "Levels").

Besides its tail, a sequence has at most one *base* block (``...:c``, where every block was before
levels) and a hash of younger *level* blocks (``...:l``, level name -> block). Each is a
``blocks.encode`` of events merged under the sequence semantics on their own (one version per
identity, at most ``max_length``), and so is the served sequence of their union with the tail: the
best version of an identity wins whatever part holds it, and an event a part trimmed had
``max_length`` better identities in that part alone. So parts may be merged in any grouping, and a
compaction merges the tail only with the levels whose sizes warrant it (``plan_args``, decided by
scripts.SNAPSHOT from the sizes in the level names and the base's header): each merge at least
doubles the size of the level an event is in, or, for the base, adds an eighth, so an event is
rewritten O(log n) times and a compaction costs O(new events) amortized.

A level's name is ``<newest score>:<count>:<random>`` in ASCII: the scripts read a level's size
(to plan) and its newest event (for the keys' expiry) from its name, without reading the block,
and a fresh random part makes every written level a new name (a compare-and-set on names cannot be
fooled, as with a block's generation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from feast_sequence.storage import blocks
from feast_sequence.storage.keys import SequenceKeys, levels_key
from feast_sequence.storage.redis_io import Command

#: A level is merged by a compaction when it holds at most this many times the events merged
#: before it (the tail's and smaller levels'): levels double, as in a binary counter.
YOUNG_FACTOR = 1
#: The base is merged when it holds at most this many times the events merged before it: at the
#: cap, the younger levels hold at most an eighth of max_length beyond what is served.
BASE_FACTOR = 8
#: At most this many blocks (base and levels) after a compaction: smaller levels are merged beyond
#: the factors rather than let a read decode more.
MAX_BLOCKS = 8


def plan_args() -> Tuple[int, int, int]:
    """scripts.SNAPSHOT's planning arguments."""
    return YOUNG_FACTOR, BASE_FACTOR, MAX_BLOCKS


def level_name(events: blocks.Events) -> bytes:
    """A fresh name for a level holding ``events`` (newest first, not empty)."""
    return b"%d:%d:%d" % (events.scores[0], len(events), int.from_bytes(os.urandom(4), "little"))


def pairs(reply: Any) -> Dict[bytes, bytes]:
    """An ``HGETALL`` reply as a dict: a script's (name, value, name, value, ...), or redis-py's dict."""
    if isinstance(reply, dict):
        return {bytes(k): bytes(v) for k, v in reply.items()}
    return {bytes(reply[i]): bytes(reply[i + 1]) for i in range(0, len(reply), 2)}


@dataclass(frozen=True)
class Stored:
    """A sequence's compacted blocks as stored: its base block (None: none) and its levels."""

    base: Optional[bytes] = None
    levels: Mapping[bytes, bytes] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.base) or bool(self.levels)

    def signature(self) -> bytes:
        """What a script compares to find these blocks unchanged: the base's header, then ``|`` and
        each level's name (scripts ``runs_unchanged``). A block's header alone for a sequence
        without levels, as before levels."""
        return blocks.header_of(self.base) + b"".join(b"|" + name for name in sorted(self.levels))

    def parts(self) -> List[bytes]:
        """Every stored block, the base first."""
        return [b for b in (self.base, *self.levels.values()) if b]

    def events(self, max_length: int) -> blocks.Events:
        """All the blocks' events merged (no TTL cut): what the sequence holds besides its tail."""
        return merged([blocks.decode_events(b) for b in self.parts()], max_length)


def merged(parts: Sequence[blocks.Events], max_length: int, oldest_us: Optional[int] = None) -> blocks.Events:
    """``blocks.merge`` of any number of parts: the served sequence of their union."""
    out = blocks.EMPTY
    for part in parts:
        out = blocks.merge(part, out, max_length, oldest_us)
    return out


def stored_commands(keys: Sequence[SequenceKeys]) -> List[Command]:
    """Read each sequence's blocks: ``GET`` of its base and ``HGETALL`` of its levels (not atomic
    together: a writer that uses them sends ``Stored.signature``, which its script checks)."""
    return [command for k in keys for command in (("GET", k[2]), ("HGETALL", levels_key(k)))]


def stored_blocks(replies: Sequence[Any]) -> List[Stored]:
    """The replies of ``stored_commands`` as each sequence's blocks."""
    return [Stored(replies[i] or None, pairs(replies[i + 1])) for i in range(0, len(replies), 2)]
