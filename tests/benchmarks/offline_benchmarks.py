"""Offline figures for `make bench`: point-in-time retrieval against the naive range join, its
scaling, and the backfill job's write rate. Real Spark in local mode, real Redis."""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Tuple

from feast import FeatureStore, PushSource
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

from feast_sequence import SequenceFeatureView, sequence_settings
from feast_sequence.definitions.columns import QUERY_TIME_US, ROW_ID
from feast_sequence.offline.historical import SparkEngine, spark_session
from feast_sequence.transformations._job import open_view
from feast_sequence.transformations.backfill import run_backfill

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the repository builder
from repos import PURCHASE_FIELDS, sequence_online, spark_offline, user, write_repo  # noqa: E402

NAIVE_TIMEOUT_S = 900  # the range join is cancelled after this; the speedup is then a lower bound
T0 = 1_600_000_000


def repository(root: Path, connection: str, events_path: Path) -> FeatureStore:
    repo = root / "offline_repo"
    conf = {"spark.driver.memory": "8g", "spark.sql.shuffle.partitions": "8"}
    write_repo(repo, "offline_bench", sequence_online(connection), spark_offline(**conf))
    source = PushSource(
        name="events_push",
        batch_source=SparkSource(name="events_src", path=str(events_path), file_format="parquet", timestamp_field="ts"),
    )
    view = SequenceFeatureView(
        name="events",
        entities=[user],
        source=source,
        schema=PURCHASE_FIELDS,
        max_length=50,
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([user, view])
    return store


def zipf_user(users: int, seed: int) -> Any:
    """A user id with P(k) ~ 1/(k+1): floor(users^u) - 1 for uniform u is log-uniform, i.e. Zipf
    with exponent 1 (the top user holds ln 2 / ln users of the events: 7% of them for 20,000)."""
    from pyspark.sql import functions as F

    return (F.floor(F.pow(F.lit(float(users)), F.rand(seed))) - 1).cast("long")


def synthetic(spark: Any, users: int, events: int, queries: int, seed: int) -> Tuple[Any, Any]:
    from pyspark.sql import functions as F

    event_frame = spark.range(events).select(
        zipf_user(users, seed).alias("user_id"),
        F.concat(F.lit("item_"), F.floor(F.rand(seed + 1) * 5000).cast("string")).alias("item_id"),
        F.floor(F.rand(seed + 2) * 20).cast("long").alias("quantity"),
        (F.rand(seed + 3) * 30).cast("float").alias("price"),
        F.timestamp_seconds(F.lit(T0) + F.floor(F.rand(seed + 4) * 10_000_000)).alias("ts"),
    )
    query_frame = spark.range(queries).select(
        zipf_user(users, seed + 5).alias("user_id"),
        F.col("id").alias(ROW_ID),
        ((F.lit(T0) + F.floor(F.rand(seed + 6) * 10_000_000)) * 1_000_000).cast("long").alias(QUERY_TIME_US),
    )
    return event_frame, query_frame


def ours(settings: Any, events: Any, queries: Any) -> float:
    start = time.perf_counter()
    SparkEngine.frame(settings, ["item_id", "quantity", "ts"], events, queries).write.format("noop").mode(
        "overwrite"
    ).save()
    return time.perf_counter() - start


def naive(spark: Any, settings: Any, events: Any, queries: Any) -> Tuple[float, bool]:
    """Join every query with every earlier event of its user, rank, keep N, collect. Returns the
    time and whether it was cancelled at NAIVE_TIMEOUT_S."""
    import threading

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    start = time.perf_counter()
    spark.sparkContext.setJobGroup("naive", "naive range join")
    timer = threading.Timer(NAIVE_TIMEOUT_S, lambda: spark.sparkContext.cancelJobGroup("naive"))
    timer.start()
    q_time = F.timestamp_micros(F.col(QUERY_TIME_US))
    pairs = queries.join(events, on="user_id").filter(F.col("ts") <= q_time)
    ranked = pairs.withColumn("rank", F.row_number().over(Window.partitionBy(ROW_ID).orderBy(F.col("ts").desc())))
    kept = ranked.filter(F.col("rank") <= settings.max_length)
    result = kept.groupBy(ROW_ID).agg(
        F.sort_array(F.collect_list(F.struct(F.col("rank"), F.col("item_id"), F.col("quantity"), F.col("ts")))).alias(
            "sequence"
        )
    )
    try:
        result.write.format("noop").mode("overwrite").save()
        cancelled = False
    except Exception as exc:  # only a cancellation at the timeout is expected here
        if "cancel" not in str(exc).lower():
            raise
        cancelled = True
    finally:
        timer.cancel()
        spark.sparkContext.setJobGroup("", "")
    return time.perf_counter() - start, cancelled


def run(connection: str) -> Dict[str, float]:
    results: Dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        events_path = root / "events"
        # A one-event placeholder source so the repository applies; the backfill data comes later.
        bootstrap = _bootstrap_events(root / "seed")
        store = repository(root, connection, events_path)
        spark = spark_session(store.config)
        spark.read.parquet(str(bootstrap)).write.mode("overwrite").parquet(str(events_path))
        settings = sequence_settings(store.get_feature_view("events"))

        small_events, small_queries = synthetic(spark, 20_000, 1_000_000, 100_000, seed=1)
        small_events = small_events.cache()
        small_events.count()
        ours(settings, small_events, small_queries)  # warm up the Python workers
        t_ours = ours(settings, small_events, small_queries)
        t_naive, cancelled = naive(spark, settings, small_events, small_queries)
        results["pit_seconds_100k_x_1m"] = t_ours
        results["pit_seconds_naive_100k_x_1m"] = t_naive
        results["pit_naive_cancelled_at_timeout"] = float(cancelled)
        results["pit_speedup"] = t_naive / t_ours  # a lower bound when the naive join was cancelled
        small_events.unpersist()

        big_events, big_queries = synthetic(spark, 200_000, 10_000_000, 1_000_000, seed=2)
        big_events = big_events.cache()
        big_events.count()
        t_big = ours(settings, big_events, big_queries)
        big_events.unpersist()
        results["pit_seconds_1m_x_10m"] = t_big
        results["pit_scaling"] = t_big / t_ours

        # Backfill: 1,000,000 events of the batch source into Redis.
        backfill_events, _ = synthetic(spark, 100_000, 1_000_000, 1, seed=3)
        backfill_events.write.mode("overwrite").parquet(str(events_path))
        summary = run_backfill(
            open_view(str(store.repo_path), "events"),
            days=10_000,
            end=datetime(2030, 1, 1, tzinfo=timezone.utc),
        )
        results["backfill_events"] = summary.events_written
        results["backfill_events_per_s"] = summary.events_per_second
    return results


def _bootstrap_events(path: Path) -> Path:
    import pandas as pd

    pd.DataFrame(
        {
            "user_id": [0],
            "item_id": ["x"],
            "quantity": [1],
            "price": [1.0],
            "ts": [pd.Timestamp("2020-01-01", tz="UTC")],
        }
    ).astype({"price": "float32"}).to_parquet(path.with_suffix(".parquet"), coerce_timestamps="us")
    return path.with_suffix(".parquet")
