"""A plain reference implementation of the sequence semantics (docs/concepts.md), for the tests.

Deliberately naive: it keeps every event, deduplicates by identity, sorts, expires and cuts, in that
order, with none of the store's incremental tricks.
"""

from __future__ import annotations

import math
import struct
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from feast.type_map import NULL_TIMESTAMP_INT_VALUE

from feast_sequence.definitions.settings import EventField, SequenceSettings

Event = Dict[str, Any]  # {"entity": hashable, "timestamp_us": int, <field>: value}

# --- the stored bytes, written from docs/concepts.md ("Identity and the identity key"), not taken
# from storage/codec.py: the tests check the codec against this, so it must not share its code. -----

#: What a null event value is stored as: Feast's default for a None inside a list (docs/concepts.md).
NULL_VALUES: Dict[str, Any] = {
    "STRING": "",
    "BYTES": b"",
    "INT32": 0,
    "INT64": 0,
    "FLOAT": 0.0,
    "DOUBLE": 0.0,
    "BOOL": False,
    "UNIX_TIMESTAMP": int(NULL_TIMESTAMP_INT_VALUE),
}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _zigzag(n: int) -> int:
    return 2 * n if n >= 0 else -2 * n - 1


def _element(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire_type) + payload


#: Each type's protobuf element: strings UTF-8 with a length prefix, integers zig-zag varints,
#: floats little-endian IEEE with one canonical NaN, booleans 0/1.
_ELEMENTS: Dict[str, Callable[[int, Any], bytes]] = {
    "STRING": lambda n, v: _element(n, 2, _varint(len(v.encode("utf-8"))) + v.encode("utf-8")),
    "BYTES": lambda n, v: _element(n, 2, _varint(len(v)) + bytes(v)),
    "INT32": lambda n, v: _element(n, 0, _varint(_zigzag(int(v)))),
    "INT64": lambda n, v: _element(n, 0, _varint(_zigzag(int(v)))),
    "UNIX_TIMESTAMP": lambda n, v: _element(n, 0, _varint(_zigzag(int(v)))),
    "FLOAT": lambda n, v: _element(n, 5, struct.pack("<f", math.nan if v != v else v)),
    "DOUBLE": lambda n, v: _element(n, 1, struct.pack("<d", math.nan if v != v else v)),
    "BOOL": lambda n, v: _element(n, 0, b"\x01" if v else b"\x00"),
}


def _value(field: EventField, event: Event) -> bytes:
    value = event.get(field.name)
    name = field.value_type.name
    return _ELEMENTS[name](field.stored_number, NULL_VALUES[name] if value is None else value)


def stored_bytes(settings: SequenceSettings, event: Event) -> Tuple[bytes, bytes]:
    """An event's stored bytes and its identity key: the dedup_by fields in dedup_by order, the
    other fields in schema order, then the time (field 1, whole seconds; field 2, a non-zero
    sub-second remainder in µs). Without dedup_by the identity is the whole stored event."""
    by_name = {f.name: f for f in settings.fields}
    identity = b"".join(_value(by_name[name], event) for name in settings.dedup_by)
    rest = b"".join(_value(f, event) for f in settings.fields if f.name not in settings.dedup_by)
    seconds, micros = divmod(event["timestamp_us"], 1_000_000)
    time = _element(1, 0, _varint(_zigzag(seconds))) + (_element(2, 0, _varint(_zigzag(micros))) if micros else b"")
    member = identity + rest + time
    return member, identity if settings.dedup_by else member


def reference_sequences(
    settings: SequenceSettings, events: Sequence[Event], now_us: Optional[int] = None
) -> Dict[Any, List[Event]]:
    encoded = [stored_bytes(settings, e) for e in events]
    members, identities = [m for m, _ in encoded], [i for _, i in encoded]
    best: Dict[Tuple[Any, bytes], Tuple[int, bytes, Event]] = {}
    for event, identity, member in zip(events, identities, members):
        key = (event["entity"], identity)
        candidate = (event["timestamp_us"], member, event)
        if key not in best or candidate[:2] > best[key][:2]:
            best[key] = candidate
    by_entity: Dict[Any, List[Tuple[int, bytes, Event]]] = {}
    for (entity, identity), (ts, _, event) in best.items():
        if settings.ttl_us and now_us is not None and ts < now_us - settings.ttl_us:
            continue
        by_entity.setdefault(entity, []).append((ts, identity, event))
    return {
        entity: [e for _, _, e in sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)[: settings.max_length]]
        for entity, rows in by_entity.items()
    }


def retail_records(events) -> List[Event]:
    """Retail events (purchases or returns frames) as the reference's records, one entity per customer."""
    return [
        {
            "entity": int(r.customer_id),
            "invoice": r.invoice,
            "item_id": r.item_id,
            "quantity": int(r.quantity),
            "unit_price": float(r.unit_price),
            "timestamp_us": r.event_timestamp.value // 1000,
        }
        for r in events.itertuples()
    ]


def comparable(values):
    """Lists as plain Python values (training data comes back as numpy arrays)."""
    out = []
    for v in list(values):
        if isinstance(v, (np.floating, float)):
            out.append(float(np.float32(v)))
        elif isinstance(v, (np.datetime64, pd.Timestamp, datetime)):
            out.append(pd.Timestamp(v).tz_localize(None) if pd.Timestamp(v).tzinfo else pd.Timestamp(v))
        elif isinstance(v, np.generic):
            out.append(v.item())
        else:
            out.append(v)
    return out
