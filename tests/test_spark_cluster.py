"""On a Spark standalone cluster (a master and two workers on loopback, executors in their own JVMs
and Python workers): the consistency job, a use case's training data and a backfill give exactly what
they give in local mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from feast_sequence.serving import serving_log
from feast_sequence.testing.spark_cluster import SparkStandalone

import cluster_jobs
import retail_logged_repo
from repos import update_config

TESTS = Path(__file__).resolve().parent


def _on_cluster(repo: Path, out: Path, customers, master: str) -> dict:
    """The jobs in a process of their own (one SparkContext per process) on ``master``."""
    spark_conf = {"spark.master": master, "spark.executor.memory": "512m", "spark.driver.host": "127.0.0.1"}
    update_config(repo, ["offline_store", "spark_conf"], spark_conf)
    out.mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, str(TESTS / "cluster_jobs.py"), "--repo", str(repo), "--out", str(out)]
        + ["--customers", ",".join(map(str, customers))],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=str(TESTS),
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return _read(out)


def _read(out: Path) -> dict:
    return {**json.loads((out / "result.json").read_text()), "training": pd.read_parquet(out / "training.parquet")}


@pytest.mark.timeout(1200)  # three JVMs to start on a shared two-CPU machine; the work itself is small
def test_cluster_results_equal_local_mode(tmp_path, retail_events, redis_server, redis_client):
    store, _, customers, _, _ = retail_logged_repo.build(
        tmp_path / "repo", retail_events, redis_server.connection_string
    )
    serving_log.configure(flush_interval_s=0.05)
    try:
        rows = [{"customer_id": c} for c in customers]
        store.get_online_features(features=store.get_feature_service("purchase_history"), entity_rows=rows)
        assert serving_log.flush()
    finally:
        serving_log.configure()
    (tmp_path / "local").mkdir()
    cluster_jobs.run_jobs(str(tmp_path / "repo"), tmp_path / "local", customers)  # this process's local Spark
    local = _read(tmp_path / "local")
    assert local["master"].startswith("local")
    with SparkStandalone(workers=2, cores=1, memory="1g") as cluster:
        remote = _on_cluster(tmp_path / "repo", tmp_path / "cluster", customers, cluster.master_url)
    assert remote["master"].startswith("spark://") and remote["executors"] == 3  # the driver and two executors
    view = local["consistency"]["purchase_history"]["views"]["purchases"]
    assert view["rows"] == len(customers) and view["exact_match_rate"] == 1.0
    assert remote["consistency"] == local["consistency"]
    pd.testing.assert_frame_equal(remote["training"], local["training"])
    assert any(len(v) for v in local["training"]["purchases__item_id"])
    assert remote["redis"] == local["redis"] and len(local["redis"]) == len(customers)
