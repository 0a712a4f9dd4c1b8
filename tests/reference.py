"""A plain reference implementation of the sequence semantics (docs/concepts.md), for the tests.

Deliberately naive: it keeps every event, deduplicates by identity, sorts, expires and cuts, in that
order, with none of the store's incremental tricks.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.storage.codec import NULL_DEFAULTS, encode_columns, layout_for

Event = Dict[str, Any]  # {"entity": hashable, "timestamp_us": int, <field>: value}


def reference_sequences(
    settings: SequenceSettings, events: Sequence[Event], now_us: Optional[int] = None
) -> Dict[Any, List[Event]]:
    layout = layout_for(settings)
    columns = [
        [NULL_DEFAULTS[f.value_type] if e.get(f.name) is None else e[f.name] for e in events] for f in settings.fields
    ]
    members, identities = encode_columns(layout, columns, [e["timestamp_us"] for e in events])
    identities = identities if identities is not None else members
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
