"""New enrichment: fill a field newly added to a sequence view in every already-indexed event.

Schema evolution flow (docs/offline.md):
  1. append the field to the view's schema (e.g. ``Field(name="description", dtype=String)``) and
     ``feast apply``; events stored before read it as the type's default until step 2;
  2. make real-time writers send the field;
  3. run this job, which joins the field from a table on one of the event fields:

    spark-submit transformations/enrichment.py --repo feature_repo --view customer_purchases \
        --table feature_repo/data/items --on item_id --fields description \
        --offline-output feature_repo/data/purchases_enriched

Online, each stored event that lacks the field is rewritten in place, atomically per entity, and
only if nothing wrote to the sequence since the job read it (its version, docs/storage-layout.md
"Concurrency"); otherwise the job reads it again: real-time events written meanwhile (with the
field) are never lost or overwritten, and a compaction meanwhile never duplicates events.
``--overwrite`` re-enriches every event (to fix a wrong enrichment). With ``--offline-output`` the
job also writes the view's source events with the field joined, for training data: point the view's
batch source at it (or enrich the source upstream). Idempotent.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

import pandas as pd

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.errors import SequenceDefinitionError, SequenceStoreError
from feast_sequence.offline.erasures import drop_erased_spark, read_markers
from feast_sequence.offline.indexing import IndexSummary, timed
from feast_sequence.output import progress
from feast_sequence.storage.client import redis_client
from feast_sequence.storage.codec import NULL_DEFAULTS, decode_members, encode_columns, layout_for
from feast_sequence.storage.compaction import CHANGED, absorb_command, snapshot_blocks, snapshot_commands
from feast_sequence.storage.conversion import column_values
from feast_sequence.storage.keys import sequence_keys_of, view_scan_pattern, writing_keys, zset_key_of
from feast_sequence.storage.redis_io import Access, evalsha, execute, replica_acks, retry_policy
from feast_sequence.storage.scripts import REWRITE
from feast_sequence.transformations._job import EPOCH, JobContext, report, spark_submit

KEYS_PER_ROUND = 500
#: Reads of one round's sequences before giving up on those that keep changing under the job.
ATTEMPTS = 20
_FAR_FUTURE = pd.Timestamp("2262-01-01", tz="UTC").to_pydatetime()


def enrich_events(settings: SequenceSettings, events: Any, table: Any, on: str, fields: Sequence[str]) -> Any:
    """DataFrame in (source events), DataFrame out (the same events with ``fields`` joined on ``on``)."""
    from pyspark.sql import functions as F

    lookup = table.select(on, *fields).dropDuplicates([on])
    return events.drop(*[f for f in fields if f in events.columns]).join(F.broadcast(lookup), on=on, how="left")


def rewrite_online(
    context: JobContext,
    lookup: Dict[Any, Dict[str, Any]],
    on: str,
    fields: Sequence[str],
    overwrite: bool = False,
    on_read: Optional[Callable[[int], None]] = None,
) -> Dict[str, int]:
    """Rewrite stored events of the view with ``fields`` looked up by their ``on`` value: those that
    lack the fields (stored before the schema change), or every one with ``overwrite``. Tells
    ``on_read`` how many stored events each round read."""

    settings = context.settings
    _check_fields(settings, on, fields)
    layout = layout_for(settings)
    names = list(settings.field_names)
    client = redis_client(context.target.online_config)
    pattern = view_scan_pattern(context.target.project, settings.view_name)
    keys: List[bytes] = []
    counts = {"sequences": 0, "events": 0, "rewritten": 0}

    def rewrite_command(key: bytes, members: List[bytes], version: bytes) -> Any:
        columns, times = decode_members(layout, members)
        matches = columns[names.index(on)]
        for name in fields:
            target = columns[names.index(name)]
            for j, value in enumerate(matches):
                if overwrite or target[j] is None:  # events written with the field keep it
                    target[j] = lookup.get(value, {}).get(name)
        filled = [
            [
                NULL_DEFAULTS[f.value_type] if v is None else v
                for v in column_values(f.name, f.value_type, pd.Series(col, dtype=object))
            ]
            for f, col in zip(settings.fields, columns)
        ]
        new_members, identities = encode_columns(layout, filled, times)
        identities = identities or new_members
        args: List[Any] = ["1" if settings.dedup_by else "0", version]
        for old, t, new, identity in zip(members, times, new_members, identities):
            args += (old, t, new, identity)
        return evalsha(REWRITE, writing_keys(sequence_keys_of(key)), args)

    def flush() -> None:
        # Read each sequence with its version, rewrite it only if that version still holds, and read
        # again the sequences that changed meanwhile. Only the tail can be rewritten in place: blocks
        # are moved back into it first (the next appends past compact_after compact them again).
        online_config = context.target.online_config
        retry, acks = retry_policy(online_config), replica_acks(online_config)
        pending, blocks = list(keys), {}
        for _ in range(ATTEMPTS):
            if not pending:
                break
            # Blocks seen by the previous read move back in the same pipeline as the next read.
            absorbs = [absorb_command(settings, sequence_keys_of(k), blocks[k]) for k in pending if k in blocks]
            reads = snapshot_commands([sequence_keys_of(k) for k in pending], whole_block=True)
            what = f"reading sequences of '{settings.view_name}' to enrich"
            snapshots = execute(client, absorbs + reads, what, retry, acks, Access.WRITE)[len(absorbs) :]
            stored = {k: snapshot_blocks(s) for k, s in zip(pending, snapshots)}
            blocks = {k: b for k, b in stored.items() if b}
            again = list(blocks)
            tails = [(k, s[1][0::2], s[2]) for k, s in zip(pending, snapshots) if not stored[k] and s[1]]
            commands = [rewrite_command(k, members, version) for k, members, version in tails]
            replies = execute(client, commands, f"enriching '{settings.view_name}'", retry, acks, Access.WRITE)
            for (key, members, _), reply in zip(tails, replies):
                if reply == CHANGED:
                    again.append(key)
                    continue
                counts["sequences"] += 1
                counts["events"] += len(members)
                counts["rewritten"] += reply
                if on_read is not None:
                    on_read(len(members))
            pending = again
        keys.clear()
        if pending:
            raise SequenceStoreError(
                f"Sequence view '{settings.view_name}': {len(pending)} sequence(s) kept changing while the "
                f"enrichment job read them, {ATTEMPTS} times; nothing was lost and the others were rewritten. "
                "Run the job again (it is idempotent)."
            )

    seen = set()
    for key in client.scan_iter(match=pattern, count=1000):
        sequence = zset_key_of(key)  # a tail, identity hash or block key: the sequence's tail key
        if sequence not in seen:
            seen.add(sequence)
            keys.append(sequence)
            if len(keys) >= KEYS_PER_ROUND:
                flush()
    if keys:
        flush()
    return counts


def _check_fields(settings: SequenceSettings, on: str, fields: Sequence[str]) -> None:
    unknown = [f for f in [on, *fields] if f not in settings.field_names]
    if unknown:
        raise SequenceDefinitionError(
            f"Sequence view '{settings.view_name}' has no field(s) {unknown}; add new fields to its "
            f"schema and run `feast apply` first (fields: {', '.join(settings.field_names)})."
        )
    in_identity = [f for f in fields if f in settings.dedup_by]
    if in_identity:
        raise SequenceDefinitionError(
            f"Field(s) {in_identity} are part of dedup_by of '{settings.view_name}': enriching them "
            "would change event identities; re-index with the backfill job instead."
        )


def run_enrichment(
    context: JobContext,
    table: Any,
    on: str,
    fields: Sequence[str],
    offline_output: Optional[str] = None,
    overwrite: bool = False,
) -> IndexSummary:
    settings = context.settings

    def run() -> Any:
        lookup_frame = table.select(on, *fields).dropDuplicates([on]).toPandas()
        lookup = {row[on]: {f: row[f] for f in fields} for row in lookup_frame.to_dict("records")}
        with progress(f"enrich {settings.view_name}") as advance:
            counts = rewrite_online(context, lookup, on, fields, overwrite, advance)
        report(
            "enrich",
            settings.view_name,
            f"{counts['sequences']:,} sequences, {counts['events']:,} stored events, {counts['rewritten']:,} rewritten",
        )
        if offline_output:
            source = context.events(EPOCH, _FAR_FUTURE, without=fields)
            # A copy the project makes: without erased entities' events, though the source holds them.
            source = drop_erased_spark(settings, source, read_markers(context.store.config))
            events = enrich_events(settings, source, table, on, fields)
            events.write.mode("overwrite").parquet(offline_output)
            report("enrich", settings.view_name, f"wrote the enriched source events to {offline_output}")
        return counts["events"], counts["rewritten"]

    return timed(run)


if __name__ == "__main__":
    sys.exit(spark_submit("enrich"))
