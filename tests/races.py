"""What the race tests drive: a plain and a dedup_by click view on a real Redis, and each writer of a
sequence as one call (push, correction, enrichment rewrite, compaction split into its SNAPSHOT and
its COMPACT), so a test can interleave them in any order or from threads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd
from feast import Field, ValueType
from feast.types import Bool, Float64, Int32, String

from feast_sequence import sequence_settings
from feast_sequence.offline.indexing import IndexTarget, write_frames
from feast_sequence.storage.client import redis_client
from feast_sequence.storage.compaction import compact_command, snapshot_commands
from feast_sequence.storage.conversion import datetime_to_us
from feast_sequence.storage.entity_keys import entity_key_bytes
from feast_sequence.storage.keys import SequenceKeys, sequence_keys, view_prefix
from feast_sequence.storage.redis_io import Access, execute
from feast_sequence.transformations._job import JobContext
from feast_sequence.transformations.enrichment import rewrite_online

from repos import applied_store, push_source, sequence_online, sequence_views, user
from sample_repo import EVENT_COLUMNS

VIEWS = ("plain", "dedup")
FIELDS = ("item", "n", "price", "flag", "ts")
#: The enrichment job rewrites ``price`` from a table on ``item``. Price is the schema's last field,
#: so its bytes come last in a member (before the timestamp): a rewrite never changes which of two
#: versions of an identity wins, nor how events of one time are ordered and trimmed. (Were it first,
#: a rewrite could make an event trimmed before the rewrite the winner after it, in the model only.)
ENRICHED, ON = "price", "item"

Event = Tuple[str, int, float, bool, pd.Timestamp]  # what a read serves: one tuple of FIELDS


def race_store(repo: Path, connection: str, max_length: int, **online: Any) -> Any:
    """A FeatureStore with views 'plain' and 'dedup' (dedup_by item) of ``max_length`` over 'clicks_push'."""
    fields = [
        Field(name="item", dtype=String),
        Field(name="n", dtype=Int32),
        Field(name="flag", dtype=Bool),
        Field(name="price", dtype=Float64),  # last: see ENRICHED
    ]
    views = sequence_views(
        {"plain": {}, "dedup": {"dedup_by": ["item"]}},
        entities=[user],
        source=push_source("clicks", repo / "events", EVENT_COLUMNS),
        schema=fields,
        max_length=max_length,
    )
    return applied_store(repo, "races", sequence_online(connection, **online), [user, *views])


def frame(rows: Sequence[Tuple[int, str, int, float, bool, pd.Timestamp]]) -> pd.DataFrame:
    """(user_id, item, n, price, flag, ts) rows as a pushable DataFrame."""
    df = pd.DataFrame(list(rows), columns=list(EVENT_COLUMNS))
    df["n"] = df["n"].astype("int32")
    df["price"] = df["price"].astype("float64")
    df["flag"] = df["flag"].astype("bool")
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df


class Writers:
    """Every writer of the store's sequences, one call each, on the store's own Redis client."""

    def __init__(self, store: Any):
        self.store = store
        self.config = store.config
        self.settings = {v: sequence_settings(store.get_feature_view(v)) for v in VIEWS}
        self.client = redis_client(self.config.online_store)

    def keys(self, view: str, user_id: int) -> SequenceKeys:
        prefix = view_prefix(self.config.project, view)
        return sequence_keys(prefix, entity_key_bytes([("user_id", ValueType.INT64, user_id)]))

    def push(self, df: pd.DataFrame) -> None:
        self.store.push("clicks_push", df)

    def correct(self, view: str, df: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> None:
        """Replace the events in [start, end] of the users of ``df`` with ``df``'s (the correction
        job's write, storage/compaction.resend_refused included)."""
        target = IndexTarget(self.config.online_store, self.config.project, self.settings[view])
        write_frames(target, [df], replace_range_us=(datetime_to_us(start), datetime_to_us(end)))

    def enrich(self, view: str, prices: Dict[str, float]) -> Dict[str, int]:
        """The enrichment job's online rewrite: every stored event's price := prices[item] (0.0 if absent)."""
        settings = self.settings[view]
        target = IndexTarget(self.config.online_store, self.config.project, settings)
        context = JobContext(self.store, self.store.get_feature_view(view), settings, target)
        lookup = {item: {ENRICHED: price} for item, price in prices.items()}
        return rewrite_online(context, lookup, ON, [ENRICHED], overwrite=True)

    def snapshot(self, view: str, user_id: int) -> List[Any]:
        """A compactor's first step: SNAPSHOT of one sequence."""
        return execute(self.client, snapshot_commands([self.keys(view, user_id)]), "snapshot")[0]

    def compact(self, view: str, user_id: int, snapshot: List[Any]) -> Optional[int]:
        """A compactor's second step: COMPACT from ``snapshot`` (its reply; None for an empty tail,
        which a compactor leaves alone)."""
        if not snapshot[1]:
            return None
        command = compact_command(self.settings[view], self.keys(view, user_id), snapshot, time.time_ns() // 1000)
        reply: int = execute(self.client, [command], "compact", access=Access.WRITE)[0]
        return reply

    def served(self, view: str, users: Sequence[int]) -> Dict[int, List[Event]]:
        out = self.store.get_online_features(
            features=[f"{view}:{f}" for f in FIELDS], entity_rows=[{"user_id": u} for u in users]
        ).to_dict()
        return {u: [tuple(e) for e in zip(*(out[f][i] for f in FIELDS))] for i, u in enumerate(users)}


def as_served(events: Sequence[Dict[str, Any]]) -> List[Event]:
    """Reference events (tests/reference.py records) as a read serves them: timestamps in whole seconds."""
    return [
        (e["item"], e["n"], e["price"], e["flag"], pd.Timestamp(e["timestamp_us"] // 1_000_000, unit="s", tz="UTC"))
        for e in events
    ]
