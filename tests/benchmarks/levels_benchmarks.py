"""What levels cost on reads (storage/levels.py; `run_benchmarks.py levels`): full reads of 1,000
events, 1 and 100 users, of sequences written in small pushes (so each holds a base block and
younger levels, as a stream leaves them) and of the same sequences written in one push (one base
block), each against Feast's arrays of the same events, interleaved in one run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict

import long_benchmarks as lb
import run_benchmarks as rb
from feast import FeatureStore
from feast.types import Float32, Int64, String, UnixTimestamp

from feast_sequence import SequenceFeatureView
from feast_sequence.feast_internals import store_provider
from feast_sequence.storage.keys import levels_key, sequence_keys_of, zset_key_of

from repos import PURCHASE_FIELDS, push_source, sequence_online, write_repo

USERS, LENGTH, STEP = 100, 1000, 20  # events per push and user: each push compacts (compact_after = STEP)


def run(connection: str) -> Dict[str, float]:
    client = lb._client(connection)
    results: Dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = write_repo(root / "levels", "levels", sequence_online(connection, compact_after=STEP))
        seq = FeatureStore(repo_path=str(repo))
        views = [
            SequenceFeatureView(
                name=name,
                entities=[rb.customer],
                source=push_source(name, repo / "data"),
                schema=PURCHASE_FIELDS,
                max_length=LENGTH,
            )
            for name in ("levels", "one_block")
        ]
        seq.apply([rb.customer, *views])
        fields = [("item_id", String), ("quantity", Int64), ("price", Float32), ("times", UnixTimestamp)]
        base = lb._arrays_store(root, "arrays", connection, fields)
        data = rb.full_sequences(USERS, LENGTH, seed=21)
        base.push("arrays_push", lb._as_arrays(data))
        online = store_provider(seq).online_store
        seq.push("one_block_push", data)
        online.drain_compactions(timeout_seconds=300)
        # Oldest first, STEP events of every user per push, each push's compaction done before the
        # next push as a stream's are: pushes faster than the background compactions would leave one
        # compaction of the whole tail, one block, and no levels to measure.
        ordered = data.sort_values("ts").assign(rank=lambda d: d.groupby("customer_id").cumcount() // STEP)
        for _, batch in ordered.groupby("rank", sort=True):
            seq.push("levels_push", batch.drop(columns="rank"))
            online.drain_compactions(timeout_seconds=300)
        blocks_per_sequence = []
        for key in {zset_key_of(k) for k in client.scan_iter(match=b"fsq:levels:levels:{*")}:
            keys = sequence_keys_of(key)
            blocks_per_sequence.append(client.exists(keys[2]) + client.hlen(levels_key(keys)))
        results["levels_blocks_per_sequence"] = sum(blocks_per_sequence) / max(len(blocks_per_sequence), 1)

        features_base = [f"arrays:{f}" for f in ("item_id", "quantity", "price", "times")]
        for count in (1, 100):
            rows = [[{"customer_id": c} for c in range(k, k + count)] for k in range(0, USERS - count + 1, count)]
            repeats = 200 if count == 1 else 30
            for view in ("levels", "one_block"):
                features_seq = [f"{view}:{f}" for f in ("item_id", "quantity", "price", "ts")]
                t_seq, t_base = rb.interleaved(
                    lambda i, rows=rows, f=features_seq: seq.get_online_features(
                        features=f, entity_rows=rows[i % len(rows)]
                    ),
                    lambda i, rows=rows: base.get_online_features(
                        features=features_base, entity_rows=rows[i % len(rows)]
                    ),
                    repeats,
                    (
                        rb.as_if_alone(seq, features_seq, full_feature_names=False),
                        rb.as_if_alone(base, features_base, full_feature_names=False),
                    ),
                )
                results[f"read_{count}_{view}_p50_ratio"] = rb.p50(t_seq) / rb.p50(t_base)
    return results
