"""Candidate rows (issue 26): 100 candidates per user, the last 50 events of each candidate's
category from a history of 10,000 events, against a plain read of the same users' 10,000 events
(`run_benchmarks.py candidates`).

The history is compacted (as long histories live), with 100 categories (about 100 events each per
user). The plain read and the candidate request ask for the same four fields; they are timed
alternately. Training is the Spark engine's (local) throughput in rows per second for the same
shape: 10 users x 100 candidate rows at one time each.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import run_benchmarks as rb
from feast import FeatureStore

from feast_sequence import SequenceSpec, SequenceUseCase, sequence_settings
from feast_sequence.definitions.use_case import use_case_settings
from feast_sequence.feast_internals import historical_request, store_provider
from feast_sequence.offline.historical import SparkEngine, historical_job, spark_session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for repos and candidates_repo
import candidates_repo  # noqa: E402

from repos import applied_store, sequence_online, user  # noqa: E402

HISTORY = 10_000
USERS = 10
CANDIDATES = 100
CATEGORIES = 100
LENGTH = 50
FIELDS = ["item_id", "category", "price", "ts"]


def _store(root: Path, connection: str) -> FeatureStore:
    """candidates_repo's purchases view, of HISTORY events, and one use case: each row the newest
    LENGTH events of its candidate's category."""
    repo = root / "cand"
    purchases = candidates_repo.purchases_view(repo / "data", max_length=HISTORY)
    candidates = SequenceUseCase(
        name="candidates",
        features=[purchases[FIELDS]],
        sequences={"purchases": SequenceSpec(length=LENGTH, where=[candidates_repo.SAME_CATEGORY])},
    )
    return applied_store(repo, "cand", sequence_online(connection), [user, purchases, candidates])


def _history(seed: int) -> pd.DataFrame:
    now = pd.Timestamp("2026-01-01", tz="UTC")
    return candidates_repo.purchases(range(USERS), HISTORY, now, seed, categories=_categories())


def _categories() -> List[str]:
    return [f"cat_{k:03d}" for k in range(CATEGORIES)]


def _rows(users: List[int], seed: int) -> Dict[str, List[Any]]:
    rng = np.random.default_rng(seed)
    categories = rng.choice(_categories(), len(users) * CANDIDATES).tolist()
    return {"user_id": [u for u in users for _ in range(CANDIDATES)], "candidate_category": categories}


def run(connection: str) -> Dict[str, float]:
    results: Dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = _store(Path(tmp), connection)
        history = _history(seed=26)
        for start in range(0, len(history), 20_000):
            store.push("purchases_push", history.iloc[start : start + 20_000])
        online = store_provider(store).online_store
        online.compact_sequence_view(store.config, sequence_settings(store.get_feature_view("purchases")))
        service = store.get_feature_service("candidates")
        plain = [f"purchases:{f}" for f in FIELDS]

        for users, repeats, key in (
            ([0], 60, "serve_candidates_100"),
            (list(range(USERS)), 15, "serve_candidates_100x10"),
        ):
            rows = [_rows(users, seed) for seed in range(repeats)]
            entity_rows = [{"user_id": u} for u in users]
            served = store.get_online_features(features=service, entity_rows=rows[0]).to_dict()  # warm
            assert all(len(v) == LENGTH for v in served["item_id"]), "every candidate has 50 events"
            store.get_online_features(features=plain, entity_rows=entity_rows)
            t_candidates, t_plain = rb.interleaved(
                lambda i, rows=rows: store.get_online_features(features=service, entity_rows=rows[i]),
                lambda i, entity_rows=entity_rows: store.get_online_features(features=plain, entity_rows=entity_rows),
                repeats,
            )
            results[f"{key}_p50_ratio"] = rb.p50(t_candidates) / rb.p50(t_plain)
            if key == "serve_candidates_100":
                results[f"{key}_p50_ms"] = rb.p50(t_candidates) * 1000
                results["serve_plain_10000_p50_ms"] = rb.p50(t_plain) * 1000

        # Training: the same shape through the Spark engine (events handed in as a Spark frame).
        spark = spark_session(store.config)
        rows = _rows(list(range(USERS)), seed=99)
        entity_df = pd.DataFrame(rows).assign(event_timestamp=history["ts"].max() + pd.Timedelta(seconds=1))
        request = historical_request(store.registry, store.project, service)
        events = spark.createDataFrame(history)
        job = historical_job(
            store.config,
            request.feature_views,
            request.feature_refs,
            entity_df,
            False,
            None,
            [],
            lambda view, settings, start, end: events,
            SparkEngine(spark),
            use_case_settings(service),
            lambda enrichment: pd.DataFrame(),
        )
        job.to_df()  # warm: the session's first job pays for starting the Python workers
        began = time.perf_counter()
        trained = job.to_df()
        results["training_candidates_rows_per_s"] = len(trained) / (time.perf_counter() - began)
        assert trained["item_id"].map(len).tolist() == [LENGTH] * len(entity_df)
    return results
