"""Redis key names of sequences: per (view, entity) a sorted set (the tail), with dedup_by a hash,
once compacted a block string (the base level) and, for long sequences, a hash of younger levels,
and while a multi-step writer works on it a version token.

``fsq:<project>:<view>:{<entity key>}:z``, ``...:h``, ``...:c``, ``...:l`` and ``...:v``. The braces make the entity key
the Redis Cluster hash tag, so the keys of one sequence live in one slot and a Lua script may touch them;
the project prefix keeps Feast projects sharing a Redis apart. See docs/storage-layout.md.
"""

from __future__ import annotations

import re
from typing import Tuple

KEY_PREFIX = b"fsq:"

_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")


def view_prefix(project: str, view_name: str) -> bytes:
    return b"".join((KEY_PREFIX, project.encode(), b":", view_name.encode(), b":{"))


SequenceKeys = Tuple[bytes, bytes, bytes]


def sequence_keys(prefix: bytes, entity_key: bytes) -> SequenceKeys:
    """The sorted-set, hash and block keys of one sequence, given ``view_prefix(...)``."""
    base = prefix + entity_key + b"}:"
    return base + b"z", base + b"h", base + b"c"


def writing_keys(keys: SequenceKeys) -> Tuple[bytes, bytes, bytes, bytes, bytes]:
    """The keys a writing script is given: the sequence's three, its version key (the token every
    mutation deletes; scripts.SNAPSHOT, docs/storage-layout.md "Concurrency"), then its levels key."""
    return (*keys, keys[2][:-1] + b"v", levels_key(keys))


def levels_key(keys: SequenceKeys) -> bytes:
    """The hash of a sequence's younger levels (level name -> block; storage/levels.py)."""
    return keys[2][:-1] + b"l"


def read_keys(keys: SequenceKeys) -> Tuple[bytes, bytes, bytes, bytes]:
    """The keys scripts.READ and scripts.VERIFY are given: the sequence's three and its levels key."""
    return (*keys, levels_key(keys))


def definitions_key(project: str) -> bytes:
    """The hash of one project's stored definitions (view name -> ``_evolution.StoredDefinition``).
    No ``:{`` in it, so no view's scan pattern matches it."""
    return KEY_PREFIX + project.encode() + b":__definitions__"


def erasure_key(project: str, entity_key: bytes) -> bytes:
    """The hash of one entity's erasure markers (view name or ``*`` -> erased up to this score).
    It shares the entity's hash tag, so the append and erase scripts may read it beside the
    sequence's keys on Redis Cluster; ``__erased__`` is no view's name, so no view's scan finds it."""
    return b"".join((KEY_PREFIX, project.encode(), b":__erased__:{", entity_key, b"}"))


def erasure_key_of(zset_key: bytes) -> bytes:
    """The erasure marker key of the entity whose sequence has the sorted-set key ``zset_key``:
    ``fsq:<project>:`` and the hash tag (the first ``:{``: projects and view names have no braces)."""
    project_end = zset_key.index(b":", len(KEY_PREFIX))
    tag = zset_key.index(b":{", project_end)
    return zset_key[: project_end + 1] + b"__erased__" + zset_key[tag:-2]


def zset_key_of(key: bytes) -> bytes:
    """The sorted-set key of the sequence that ``key`` (any of its keys) belongs to."""
    return key[:-1] + b"z"


def sequence_keys_of(zset_key: bytes) -> SequenceKeys:
    """The keys of a sequence, given its sorted-set key."""
    return zset_key, zset_key[:-1] + b"h", zset_key[:-1] + b"c"


def view_scan_pattern(project: str, view_name: str) -> bytes:
    """A SCAN MATCH pattern for every key of one view in one project."""
    return _GLOB_SPECIAL.sub(rb"\\\1", view_prefix(project, view_name)) + b"*"
