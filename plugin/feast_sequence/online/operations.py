"""The online store's operations on sequence views, written once without I/O: each is a generator
that yields the Redis round trips it needs and receives their replies, and the store runs it with
the sync or the async driver (storage/drivers.py).

Writes validate and encode the whole input before anything is sent, so bad input writes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import pandas as pd
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.online.background_compaction import compact_inline_from
from feast_sequence.online.expired_pushes import report_expired
from feast_sequence.online.request_plan import RequestPlan
from feast_sequence.serving import metrics
from feast_sequence.storage.append import (
    encode_frame,
    encode_proto_rows,
    erased_dropped,
    plan_append,
    tails_to_compact,
)
from feast_sequence.storage.codec import EncodedEvents
from feast_sequence.storage.compaction import compact
from feast_sequence.storage.drivers import Operation
from feast_sequence.storage.index_enrich import plan_index_enrichment, plan_proto_row_enrichment
from feast_sequence.storage.keys import SequenceKeys
from feast_sequence.storage.lookup import one_call_per_key
from feast_sequence.storage.read import Row, decode_rows, plan_read, read_commands
from feast_sequence.storage.redis_io import Access, RoundTrip, replica_acks, retry_policy

Result = TypeVar("Result")
StoreOperation = Operation[RoundTrip, Result]
"""A store operation: yields round trips to Redis and receives their replies (storage/drivers.py)."""

#: Hands sequences whose tails a push found full to the store's background compaction
#: (online/background_compaction.py); returns those it refused, which the push compacts itself.
Defer = Callable[[SequenceSettings, List[SequenceKeys]], List[SequenceKeys]]

#: Feast's rows of ``online_write_batch``: entity key, feature values, event time, created time.
ProtoRows = List[Tuple[EntityKeyProto, Dict[str, ValueProto], datetime, Optional[datetime]]]


def write_events(
    config: RepoConfig, settings: SequenceSettings, df: pd.DataFrame, defer: Optional[Defer] = None
) -> StoreOperation[int]:
    """Append every row of ``df`` as an event of the view; returns the row count. With ``defer``,
    the compaction the append triggers is left to it, except for tails at the hard bound."""
    df = yield from _with_index_enrichments(config, settings, df, plan_index_enrichment)
    events = encode_frame(settings, df)
    yield from _append(config, settings, events, defer)
    return len(events)


def write_encoded(
    config: RepoConfig, settings: SequenceSettings, events: EncodedEvents, defer: Optional[Defer] = None
) -> StoreOperation[int]:
    """Append events already encoded (a small HTTP push: storage/json_events.py); returns their count."""
    yield from _append(config, settings, events, defer)
    return len(events)


def write_proto_rows(
    config: RepoConfig, settings: SequenceSettings, data: ProtoRows, progress: Optional[Callable[[int], Any]]
) -> StoreOperation[None]:
    """Append Feast's rows (materialization, ``write_to_online_store``) as events of the view."""
    data = yield from _with_index_enrichments(config, settings, data, plan_proto_row_enrichment)
    yield from _append(config, settings, encode_proto_rows(settings, data))
    if progress:
        progress(len(data))


def read_rows(
    config: RepoConfig,
    settings: SequenceSettings,
    entity_keys: List[EntityKeyProto],
    requested_features: Optional[List[str]],
    now_us: int,
) -> StoreOperation[List[Row]]:
    """Feast's ``online_read`` of a sequence view at ``now_us``: one row of lists per entity key."""
    read = plan_read(settings, requested_features)
    commands = read_commands(settings, config.project, _rows(entity_keys), now_us)
    replies = yield RoundTrip(commands, _reading(settings), retry_policy(config.online_store))
    return decode_rows(read, commands, replies)


def read_request(
    config: RepoConfig, plan: RequestPlan, response: Any, full_feature_names: bool, include_version_metadata: bool
) -> StoreOperation[None]:
    """Every view of one request through Feast's path, sequence or regular, in one pipeline."""
    replies = yield RoundTrip(plan.commands, "reading features", retry_policy(config.online_store))
    plan.populate(replies, response, full_feature_names, include_version_metadata)


def _with_index_enrichments(
    config: RepoConfig, settings: SequenceSettings, rows: Any, plan: Any
) -> StoreOperation[Any]:
    """``rows`` (a frame, or Feast's proto rows, per ``plan``) with the view's index-time enriched
    fields, looked up in one pipeline; unchanged for views without enrichments."""
    lookups, enriched = plan(
        settings,
        config.project,
        config.entity_key_serialization_version,
        rows,
        one_call_per_key(config.online_store),
    )
    if not lookups:
        return enriched([])
    replies = yield RoundTrip(lookups, _enriching(settings), retry_policy(config.online_store))
    return enriched(replies)


def _append(
    config: RepoConfig, settings: SequenceSettings, events: EncodedEvents, defer: Optional[Defer] = None
) -> StoreOperation[None]:
    online = config.online_store
    commands = plan_append(settings, config.project, events)
    what = _appending(settings, events)
    sizes = yield RoundTrip(commands, what, retry_policy(online), replica_acks(online), Access.WRITE)
    report_expired(config.project, settings, events.scores_us)
    erased = erased_dropped(sizes)  # events of erased entities, dropped by the store (scripts.APPEND)
    if erased:
        metrics.ERASED_EVENTS_DROPPED.labels(settings.view_name).inc(erased)
    full = tails_to_compact(settings, commands, sizes, online.compact_after)
    if defer is not None and full:
        bound = compact_inline_from(settings, online.compact_after)
        deferred = tails_to_compact(settings, commands, sizes, online.compact_after, below=bound)
        full = sorted(set(full).difference(deferred).union(defer(settings, deferred)))
    compacted = yield from compact(settings, full, retry_policy(online), replica_acks(online))
    if compacted:
        metrics.COMPACTED_SEQUENCES.labels(settings.view_name, "inline").inc(compacted)


def _rows(entity_keys: Sequence[EntityKeyProto]) -> List[Dict[str, ValueProto]]:
    return [dict(zip(k.join_keys, k.entity_values)) for k in entity_keys]


def _appending(settings: SequenceSettings, events: EncodedEvents) -> str:
    return f"appending {len(events)} event(s) to sequence view '{settings.view_name}'"


def _enriching(settings: SequenceSettings) -> str:
    return f"looking up index-time enrichments of sequence view '{settings.view_name}'"


def _reading(settings: SequenceSettings) -> str:
    return f"reading sequence view '{settings.view_name}'"
