"""Reading a regular feature view's values for many keys, as Feast's Redis store lays them out.

Enrichment joins events with a regular view (e.g. ``item``) by one of their fields. Feast stores a
regular view as one Redis hash per entity: its key is the serialized entity key plus the project,
each feature a murmur3-hashed field holding a serialized ``Value``. These helpers build one HMGET per
distinct key, so a request's whole lookup is one pipeline, and decode the replies to Python values.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from feast_sequence._codec import NULL_DEFAULTS
from feast_sequence._enrich_spec import Enrichment
from feast_sequence._redis_io import Command

# The ``Value`` field a join key of each type is serialized in.
_KEY_FIELD = {
    ValueType.STRING: "string_val",
    ValueType.BYTES: "bytes_val",
    ValueType.INT32: "int32_val",
    ValueType.INT64: "int64_val",
}


def lookup_commands(
    enrichment: Enrichment, project: str, serialization_version: int, keys: Sequence[Any]
) -> List[Command]:
    """One HMGET per key, for the enrichment's features of its view."""
    field = _KEY_FIELD.get(enrichment.key_type)
    if field is None:
        raise ValueError(f"Enrichment join keys of type {enrichment.key_type.name} are not supported.")
    hash_fields = [_mmh3(f"{enrichment.view}:{name}") for name, _ in enrichment.features]
    suffix = project.encode("utf-8")
    if serialization_version == 3:
        # Feast's v3 layout for one join key, built directly: serialize_entity_key per key (a proto
        # and several packs each) was a sixth of a request enriching thousands of distinct keys.
        name = enrichment.join_key.encode("utf-8")
        head = _U32.pack(1) + _U32.pack(ValueType.STRING.value) + _U32.pack(len(name)) + name
        encode_value = _V3_VALUE[enrichment.key_type]
        type_tag = _U32.pack(enrichment.key_type.value)
        out: List[Command] = []
        for key in keys:
            raw = encode_value(key)
            out.append(("HMGET", b"".join((head, type_tag, _U32.pack(len(raw)), raw, suffix)), *hash_fields))
        return out
    commands: List[Command] = []
    for key in keys:
        entity = EntityKeyProto(join_keys=[enrichment.join_key], entity_values=[ValueProto(**{field: key})])
        redis_key = serialize_entity_key(entity, entity_key_serialization_version=serialization_version)
        commands.append(("HMGET", redis_key + suffix, *hash_fields))
    return commands


_U32 = struct.Struct("<I")
_V3_VALUE = {
    ValueType.STRING: lambda v: v.encode("utf-8"),
    ValueType.BYTES: bytes,
    ValueType.INT32: struct.Struct("<i").pack,
    ValueType.INT64: struct.Struct("<q").pack,
}


def decode_lookup(
    enrichment: Enrichment, keys: Sequence[Any], replies: Sequence[Sequence[Optional[bytes]]]
) -> Tuple[Dict[Any, Tuple[Any, ...]], int]:
    """``{key: feature values}`` for the keys found, and how many were missing.

    A feature the hash lacks (or holds as null) gets its type's null default, as nulls in sequences do.
    """
    defaults = [NULL_DEFAULTS[t] for _, t in enrichment.features]
    found: Dict[Any, Tuple[Any, ...]] = {}
    for key, reply in zip(keys, replies):
        if not any(reply):
            continue
        found[key] = tuple(_python(raw, default) for raw, default in zip(reply, defaults))
    return found, len(keys) - len(found)


def _python(raw: Optional[bytes], default: Any) -> Any:
    if not raw:
        return default
    value = ValueProto.FromString(raw)
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return default
    if kind == "unix_timestamp_val":
        return value.unix_timestamp_val
    return getattr(value, kind)


def missing_row(enrichment: Enrichment) -> Tuple[Any, ...]:
    return tuple(NULL_DEFAULTS[t] for _, t in enrichment.features)
