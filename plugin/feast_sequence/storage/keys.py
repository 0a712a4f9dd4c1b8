"""Redis key names of sequences: one sorted set (and, with dedup_by, one hash) per (view, entity).

``fsq:<project>:<view>:{<entity key>}:z`` and ``...:h``. The braces make the entity key the Redis
Cluster hash tag, so both keys of one sequence live in one slot and a Lua script may touch both;
the project prefix keeps Feast projects sharing a Redis apart. See docs/storage-layout.md.
"""

from __future__ import annotations

import re
from typing import Tuple

KEY_PREFIX = b"fsq:"

_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")


def view_prefix(project: str, view_name: str) -> bytes:
    return b"".join((KEY_PREFIX, project.encode(), b":", view_name.encode(), b":{"))


def sequence_keys(prefix: bytes, entity_key: bytes) -> Tuple[bytes, bytes]:
    """The sorted-set and hash keys of one sequence, given ``view_prefix(...)``."""
    base = prefix + entity_key + b"}:"
    return base + b"z", base + b"h"


def definitions_key(project: str) -> bytes:
    """The hash of one project's stored definitions (view name -> ``_evolution.StoredDefinition``).
    No ``:{`` in it, so no view's scan pattern matches it."""
    return KEY_PREFIX + project.encode() + b":__definitions__"


def zset_key_of(key: bytes) -> bytes:
    """The sorted-set key of the sequence that ``key`` (either of its two keys) belongs to."""
    return key[:-1] + b"z"


def sequence_keys_of(zset_key: bytes) -> Tuple[bytes, bytes]:
    """Both keys of a sequence, given its sorted-set key."""
    return zset_key, zset_key[:-1] + b"h"


def view_scan_pattern(project: str, view_name: str) -> bytes:
    """A SCAN MATCH pattern for every key of one view in one project."""
    return _GLOB_SPECIAL.sub(rb"\\\1", view_prefix(project, view_name)) + b"*"
