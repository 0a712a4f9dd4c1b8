"""Every private Feast symbol feast-sequence uses, in one place.

Feast has no public API for these. Each is named here once, wrapped in a function with the
signature we rely on, and checked by ``tests/test_feast_internals.py``, so that a Feast release that
moves or changes one fails there, with the symbol's name, rather than deep inside a request.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from feast.infra.online_stores.redis import RedisOnlineStore


def parse_connection_string(connection_string: str) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """Feast's parse of a Redis ``connection_string``: the ``host:port`` nodes and the other
    parameters (typed: numbers, booleans). ``RedisOnlineStore._parse_connection_string``."""
    return RedisOnlineStore._parse_connection_string(connection_string)


def feast_redis_client(online_config: Any) -> Any:
    """A new client built exactly as Feast's Redis online store builds it (plain, cluster or
    sentinel, with ssl and password from the connection string). ``RedisOnlineStore._get_client``."""
    return RedisOnlineStore()._get_client(online_config)
