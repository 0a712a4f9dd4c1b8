"""Run by tests/test_spark_cluster.py in a process of its own (one SparkContext per process), on the
Spark its repository names: the consistency job, a use case's training data and a backfill; their
results go to --out for the test to compare between local mode and a standalone cluster."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List

import pandas as pd
from feast import FeatureStore

from feast_sequence import get_training_data
from feast_sequence.offline.spark import spark_session
from feast_sequence.storage.client import redis_client
from feast_sequence.transformations._job import open_view
from feast_sequence.transformations.backfill import run_backfill
from feast_sequence.transformations.consistency_job import run_consistency


def run_jobs(repo: str, out: Path, customers: List[int]) -> Dict[str, Any]:
    """The three runs on the repository's Spark; their results, also written to ``out``."""
    store = FeatureStore(repo_path=repo)
    spark = spark_session(store.config)
    run = run_consistency(store, out / "consistency", use_cases=["purchase_history"])
    entity_df = pd.DataFrame(
        {
            "customer_id": customers * 2,
            "event_timestamp": [pd.Timestamp("2010-06-01", tz="UTC")] * len(customers)
            + [pd.Timestamp("2011-01-01", tz="UTC")] * len(customers),
        }
    )
    training = get_training_data(store, entity_df, "purchase_history", full_feature_names=True).to_df()
    training.to_parquet(out / "training.parquet")
    client = redis_client(store.config.online_store)
    client.flushall()
    run_backfill(open_view(repo, "purchases"), days=3650, end=datetime(2011, 1, 1, tzinfo=timezone.utc))
    state = {
        key.hex(): [[m.hex(), s] for m, s in client.zrange(key, 0, -1, withscores=True)]
        for key in sorted(client.scan_iter(match=b"fsq:*}:z"))
    }
    result = {
        "master": spark.sparkContext.master,
        "executors": spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size(),
        "consistency": run.summary["use_cases"],
        "redis": state,
    }
    (out / "result.json").write_text(json.dumps(result, default=str))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--customers", required=True, help="comma-separated customer ids")
    args = parser.parse_args()
    run_jobs(args.repo, args.out, [int(c) for c in args.customers.split(",")])


if __name__ == "__main__":
    main()
