"""The streaming indexer on real Spark (local mode) and Redis, fed by Spark's file source (no Kafka
broker here): files landing over several micro-batches, every event of a micro-batch kept, a job
killed with SIGKILL that resumes from its checkpoint without losing or duplicating an event,
index-time enrichment, invalid input, and the documented Kafka message format."""

from __future__ import annotations

import os
import re
import runpy
import signal
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore
from landing import land

from feast_sequence import sequence_settings
from feast_sequence.errors import FeastSequenceError, SequenceConfigurationError
from feast_sequence.transformations._job import open_view
from feast_sequence.transformations.streaming import (
    FileStream,
    job_spark_session,
    parse_json_events,
    run_stream,
)

import serving_repo
from conftest import redis_state
from reference import reference_sequences
from repos import applied_store, sequence_online, spark_offline, wait_until
from sample_repo import assert_clicks_match_reference, click_records, events, objects

PROJECT_ROOT = Path(__file__).resolve().parents[1]
USERS = 40


def spark_store(repo: Path, connection_string: str, objects: List) -> FeatureStore:
    """A repository with the Spark settings of the example repository, the given objects applied."""
    offline = spark_offline(**{"spark.driver.memory": "4g"})
    return applied_store(repo, "stream", sequence_online(connection_string), objects, offline=offline)


@pytest.fixture
def stream_repo(tmp_path: Path, redis_client, redis_server) -> FeatureStore:
    """The sample repository's click views."""
    return spark_store(tmp_path / "repo", redis_server.connection_string, objects(tmp_path / "repo" / "data"))


def click_files(files: int, per_file: int, seed: int) -> List[pd.DataFrame]:
    """Random clicks of USERS users: many per user per file, repeated items (dedup_by), and a few
    events sent twice (a producer's retry)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    frames = []
    for _ in range(files):
        frame = events(
            [
                (
                    int(rng.integers(0, USERS)),
                    f"item{rng.integers(0, 12)}",
                    int(rng.integers(0, 100)),
                    float(rng.integers(0, 10_000)) / 100,
                    bool(rng.random() < 0.5),
                    start + pd.Timedelta(microseconds=int(rng.integers(0, 10**12))),
                )
                for _ in range(per_file)
            ]
        )
        frame = frame.astype({"n": "int32"})  # parquet files must carry the view's types
        frames.append(pd.concat([frame, frame.sample(n=per_file // 20, random_state=seed)], ignore_index=True))
    return frames


def kill_session(session_id: int) -> None:
    """SIGKILL every process of the job's session: the JVM, the Python driver and Spark's Python
    worker daemon (which has a process group of its own)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            session = int(stat.read_text().rsplit(")", 1)[1].split()[3])
            if session == session_id:
                os.kill(int(stat.parent.name), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            continue  # the process has just ended


def test_files_landing_over_several_micro_batches_are_all_indexed(stream_repo, tmp_path):
    landing = tmp_path / "landing"
    frames = click_files(files=6, per_file=150, seed=1)
    # One user's burst: three clicks in one file, hence one micro-batch. Feast's stream processor
    # keeps the newest row per entity of a micro-batch; every one of them must be kept here.
    burst = events([(USERS, f"burst{i}", i, 1.0, True, f"2024-06-01T00:00:0{i}.25Z") for i in range(3)])
    frames.insert(2, burst)
    for position, frame in enumerate(frames[:3]):
        land(frame, landing, f"part-{position}", "json")

    spark = job_spark_session(open_view(str(stream_repo.repo_path), "clicks"))
    streams = [
        run_stream(
            open_view(str(stream_repo.repo_path), view),
            spark,
            FileStream(str(landing), "json", max_files_per_trigger=1),
            str(tmp_path / "checkpoints" / view),
            trigger_seconds=0.25,
        )
        for view in ("clicks", "clicks_dedup")  # two views fed by one folder, a checkpoint each
    ]
    try:
        wait_until(lambda: all(s.progress.batches >= 1 for s in streams), 120, "the first micro-batches")
        for position, frame in enumerate(frames[3:], start=3):  # the rest lands while they run
            land(frame, landing, f"part-{position}", "json")
        total = sum(len(f) for f in frames)
        wait_until(lambda: all(s.progress.events_written == total for s in streams), 120, f"{total} events written")
    finally:
        for stream in streams:
            stream.stop()

    assert all(s.progress.batches >= 4 for s in streams)  # one file per micro-batch, over several
    assert_clicks_match_reference(stream_repo, frames, USERS)
    served = stream_repo.get_online_features(
        features=["clicks:item", "clicks:n"], entity_rows=[{"user_id": USERS}]
    ).to_dict()
    assert list(zip(served["item"][0], served["n"][0])) == [("burst2", 2), ("burst1", 1), ("burst0", 0)]


def test_a_killed_job_resumes_from_its_checkpoint(stream_repo, redis_client, tmp_path):
    landing, checkpoint = tmp_path / "landing", tmp_path / "checkpoint"
    frames = click_files(files=5, per_file=300, seed=2)
    for position, frame in enumerate(frames):
        land(frame, landing, f"part-{position}", "parquet")
    command = [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master",
        "local[2]",
        str(PROJECT_ROOT / "transformations" / "streaming.py"),
        "--repo",
        str(stream_repo.repo_path),
        "--view",
        "clicks",
        "--files",
        str(landing),
        "--format",
        "parquet",
        "--max-files-per-trigger",
        "1",
        "--checkpoint",
        str(checkpoint),
        "--once",
    ]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}

    # SIGKILL the job while a micro-batch is in flight: planned in the offset log, not yet in the
    # commit log.
    def batches(log: str) -> int:
        folder = checkpoint / log
        return len([p for p in folder.iterdir() if p.name.isdigit()]) if folder.exists() else 0

    with open(tmp_path / "killed.log", "w") as log:
        job = subprocess.Popen(command, env=env, start_new_session=True, stdout=log, stderr=log)
        try:
            wait_until(
                lambda: batches("offsets") >= 3 and batches("commits") < batches("offsets"),
                180,
                "batch 2",
                process=job,
            )
        finally:
            kill_session(job.pid)
            job.wait()
    committed, planned = batches("commits"), batches("offsets")
    assert 2 <= committed < len(frames)
    partial = redis_state(redis_client, stream_repo)
    assert partial  # the killed job had written some events

    restarted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    replayed = [int(b) for b in re.findall(r"\] clicks: batch (\d+):", restarted.stdout)]
    # It resumes at the first uncommitted micro-batch: the one in flight is replayed, none is skipped.
    assert replayed == list(range(committed, len(frames))), (committed, planned, restarted.stdout)
    after_kill = redis_state(redis_client, stream_repo)

    settings = sequence_settings(stream_repo.get_feature_view("clicks"))
    reference = reference_sequences(settings, click_records(frames))
    served = stream_repo.get_online_features(
        features=["clicks:item", "clicks:n"], entity_rows=[{"user_id": u} for u in range(USERS)]
    ).to_dict()
    for u in range(USERS):
        assert list(zip(served["item"][u], served["n"][u])) == [(e["item"], e["n"]) for e in reference[u]]

    # The same files through one uninterrupted run leave the very same store.
    redis_client.flushall()
    stream = run_stream(
        open_view(str(stream_repo.repo_path), "clicks"),
        job_spark_session(open_view(str(stream_repo.repo_path), "clicks")),
        FileStream(str(landing), "parquet", max_files_per_trigger=4),
        str(tmp_path / "uninterrupted"),
        available_now=True,
    )
    stream.wait(timeout_seconds=120)
    assert redis_state(redis_client, stream_repo) == after_kill


def test_index_time_enrichment_applies_to_streamed_events(tmp_path, redis_client, redis_server):
    repo = tmp_path / "repo"
    store = spark_store(repo, redis_server.connection_string, serving_repo.objects(repo / "data"))
    items = serving_repo.item_rows(30, pd.Timestamp("2024-01-01", tz="UTC"))  # i29.. have no row
    store.push("items_push", items)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    clicks = serving_repo.clicks(400, users=20, now=now, seed=5)
    land(clicks, tmp_path / "landing", "clicks", "parquet")  # no title or cost: the writer adds them
    context = open_view(str(repo), "clicks_indexed")
    stream = run_stream(
        context,
        job_spark_session(context),
        FileStream(str(tmp_path / "landing"), "parquet"),
        str(tmp_path / "checkpoint"),
        available_now=True,
    )
    stream.wait(timeout_seconds=120)
    assert stream.progress.events_written == len(clicks)
    # Index-time enriched fields are read through a use case (filtered, cut to 3, padded).
    served = store.get_online_features(
        features=store.get_feature_service("ranking_indexed"), entity_rows=[{"user_id": u} for u in range(20)]
    ).to_dict()
    titles = dict(zip(items["item_id"], items["title"]))
    pairs = [
        (i, t)
        for ids, ts, mask in zip(served["item_id"], served["title"], served["clicks_indexed__mask"])
        for i, t, kept in zip(ids, ts, mask)
        if kept
    ]
    assert len(pairs) > 30 and any(i in titles for i, _ in pairs) and any(i not in titles for i, _ in pairs)
    assert all(t == titles.get(i, "") for i, t in pairs)


def test_the_documented_kafka_value_parses_into_events(stream_repo):
    """The JSON event of docs/streaming.md, as KafkaStream parses a record's value."""
    from pyspark.sql import functions as F

    doc = (PROJECT_ROOT / "docs" / "streaming.md").read_text()
    value = re.search(r"```json\n(.*?)\n```", doc, re.S).group(1)
    features = runpy.run_path(str(PROJECT_ROOT / "feature_repo" / "features.py"))
    settings = sequence_settings(features["customer_purchases"])
    spark = job_spark_session(open_view(str(stream_repo.repo_path), "clicks"))
    records = spark.createDataFrame([(value.encode(), b"13085")], "value binary, key binary")
    parsed = parse_json_events(records, settings)
    assert parsed.columns == [
        "customer_id",
        "invoice",
        "item_id",
        "quantity",
        "unit_price",
        "event_timestamp",
    ]
    rows = [r.asDict() for r in parsed.withColumn("event_timestamp", F.unix_micros("event_timestamp")).collect()]
    assert rows == [
        {
            "customer_id": 13085,
            "invoice": "489434",
            "item_id": "85048",
            "quantity": 12,
            "unit_price": pytest.approx(6.95),
            "event_timestamp": pd.Timestamp("2009-12-01T07:45:00.123456Z").value // 1000,
        }
    ]


def test_cli_runs_the_stream_job(capsys):
    from feast_sequence.cli import main

    assert main(["stream", "--help"]) == 0
    assert "--checkpoint" in capsys.readouterr().out


def test_an_invalid_event_stops_the_stream_with_its_reason(stream_repo, tmp_path):
    """Never dropped and logged: the query stops, names the problem and how to resume."""
    landing = tmp_path / "landing"
    land(events([(1, "a", 1, 1.0, True, "2024-01-01T00:00:00Z")]).assign(user_id=None), landing, "bad", "json")
    context = open_view(str(stream_repo.repo_path), "clicks")
    checkpoint = tmp_path / "checkpoint"
    stream = run_stream(
        context, job_spark_session(context), FileStream(str(landing)), str(checkpoint), available_now=True
    )
    with pytest.raises(
        FeastSequenceError, match=r"'user_id'.*is null.*restart with --checkpoint " + str(checkpoint)
    ) as failed:
        stream.wait(timeout_seconds=120)
    # The bad record's position: its file and its number in it.
    assert re.search(r"at micro-batch 0: .*\(record: file:\S*/landing/bad\.json, record 1\)", str(failed.value))


def test_a_bad_trigger_is_rejected_before_the_query_starts(stream_repo, tmp_path):
    context = open_view(str(stream_repo.repo_path), "clicks")
    source = FileStream(str(tmp_path))
    with pytest.raises(SequenceConfigurationError, match=r"'clicks': trigger_seconds=0 is invalid"):
        run_stream(context, None, source, str(tmp_path / "checkpoint"), trigger_seconds=0)
    with pytest.raises(SequenceConfigurationError, match=r"'clicks': choose a trigger interval or available-now"):
        run_stream(context, None, source, str(tmp_path / "checkpoint"), trigger_seconds=1, available_now=True)
