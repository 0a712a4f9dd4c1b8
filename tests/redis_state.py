"""What a Redis holds, read back whole, to compare two write paths' effects."""

from __future__ import annotations

from typing import Any, Dict

from conftest import sequence_key_count


def everything(client) -> Dict[bytes, Any]:
    """Every Redis key with its value (hashes, sorted sets with scores, strings)."""
    state: Dict[bytes, Any] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"hash":
            state[key] = client.hgetall(key)
        elif kind == b"zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        else:
            state[key] = client.dump(key)
    return state


def stored(redis_client) -> int:
    """Sequence keys plus the regular view's entity hashes."""
    regular = sum(1 for k in redis_client.scan_iter(count=1000) if not k.startswith(b"fsq:"))
    return sequence_key_count(redis_client) + regular


def clear(client) -> None:
    """Remove the stored values, keeping the record of applied definitions that writes check."""
    for key in client.scan_iter(count=1000):
        if not key.endswith(b"__definitions__"):
            client.delete(key)
