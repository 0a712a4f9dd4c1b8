"""`make demo` (`feast-sequence demo`, cli/demo.py): apply the example repository, replay the real
retail events through `store.push`, and read three customers' latest purchases and returns with
`store.get_online_features`; then check what the `purchase_ranking` use case served (its logs)
against training data, in an HTML report.

Uses the Redis named by FEAST_SEQUENCE_REDIS (``host:port``), or starts a private redis-server.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional

import pandas as pd

from feast_sequence.examples.retail import RAW_FILE, RetailEvents, load_events, write_repo_data
from feast_sequence.offline.spark import quiet_java_options
from feast_sequence.testing.local_redis import LocalRedis

if TYPE_CHECKING:  # imported in run_demo(), after `feast apply`
    from feast import FeatureStore

FIELDS = ["item_id", "quantity", "unit_price", "event_timestamp"]
REDIS_ENV = "FEAST_SEQUENCE_REDIS"


@contextlib.contextmanager
def redis_connection() -> Iterator[str]:
    if os.environ.get(REDIS_ENV):
        yield os.environ[REDIS_ENV]
        return
    with LocalRedis() as server:
        print(f"Started a private redis-server on {server.connection_string} (set {REDIS_ENV} to use yours).")
        yield server.connection_string


def apply_env(verbose: bool) -> Dict[str, str]:
    """`feast apply` (which starts Spark to check the sources) with each warning once and quiet
    Spark logging, unless ``verbose``."""
    env = dict(os.environ)
    if not verbose:
        env["PYTHONWARNINGS"] = "once"
        env["SPARK_SUBMIT_OPTS"] = f"{env.get('SPARK_SUBMIT_OPTS', '')} {quiet_java_options()}".strip()
    return env


def replay(store: FeatureStore, source: str, events: pd.DataFrame, batch_rows: int) -> float:
    """Push events in time order, `batch_rows` per push; returns events per second."""
    ordered = events.sort_values("event_timestamp", kind="stable")
    start = time.perf_counter()
    for offset in range(0, len(ordered), batch_rows):
        store.push(source, ordered.iloc[offset : offset + batch_rows])
    return len(ordered) / (time.perf_counter() - start)


def show(store: FeatureStore, customer: int) -> None:
    refs = [f"{view}:{f}" for view in ("customer_purchases", "customer_returns") for f in FIELDS]
    out = store.get_online_features(
        features=refs, entity_rows=[{"customer_id": customer}], full_feature_names=True
    ).to_dict()
    print(f"\nCustomer {customer}")
    for view, label in (("customer_purchases", "latest purchases"), ("customer_returns", "latest returns")):
        columns = {f: out[f"{view}__{f}"][0] for f in FIELDS}
        print(f"  {label} ({len(columns['item_id'])} kept):")
        frame = pd.DataFrame(columns).head(5)
        frame["unit_price"] = frame["unit_price"].round(2)
        print("    " + frame.to_string(index=False).replace("\n", "\n    ") if len(frame) else "    (none)")


def read_latency_ms(store: FeatureStore, customers: List[int], reads: int) -> List[float]:
    refs = [f"{view}:{f}" for view in ("customer_purchases", "customer_returns") for f in FIELDS]
    timings = []
    for k in range(reads):
        start = time.perf_counter()
        store.get_online_features(
            features=refs,
            entity_rows=[{"customer_id": customers[k % len(customers)]}],
            full_feature_names=True,
        ).to_dict()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def run_demo(repo: Path, raw: Optional[Path], batch_rows: int, report: Path, verbose: bool) -> None:
    """The demo on the repository ``repo`` (the example one) and the raw events ``raw`` (default:
    ``RAW_FILE``), pushed ``batch_rows`` at a time; the consistency report goes to ``report``.
    ``verbose``: Spark's own logging during `feast apply`."""
    started = datetime.now(timezone.utc)
    events = load_events(raw or RAW_FILE)
    write_repo_data(events, repo / "data")
    with redis_connection() as connection:
        os.environ[REDIS_ENV] = connection
        feast_cli = Path(sys.executable).parent / "feast"
        subprocess.run([str(feast_cli), "-c", str(repo), "apply"], check=True, env=apply_env(verbose))
        from feast import FeatureStore

        store = FeatureStore(repo_path=str(repo))
        print(
            f"\nReplaying {len(events.purchases):,} purchases and {len(events.returns):,} returns "
            "through store.push ..."
        )
        purchase_rate = replay(store, "purchase_push", events.purchases, batch_rows)
        return_rate = replay(store, "return_push", events.returns, batch_rows)
        print(
            f"  push rate: {purchase_rate:,.0f} purchases/s, {return_rate:,.0f} returns/s "
            f"({batch_rows:,} rows per push)"
        )

        busiest = events.returns["customer_id"].value_counts().index[:3].tolist()
        for customer in busiest:
            show(store, int(customer))
        timings = read_latency_ms(store, busiest, reads=300)
        quantiles = statistics.quantiles(timings, n=100)
        print(
            f"\nget_online_features, 1 customer, 2 sequence views x 4 fields, {len(timings)} reads: "
            f"p50 {quantiles[49]:.2f} ms, p99 {quantiles[98]:.2f} ms"
        )
        show_use_case(store, events, int(busiest[0]))
        check_consistency(store, busiest, started, report)


def show_use_case(store: FeatureStore, events: RetailEvents, customer: int) -> None:
    """The `purchase_ranking` use case (feature_repo/features.py): the same stored purchases,
    filtered, cut to 10, joined with the item catalogue and padded, as a ranking model takes them."""
    store.write_to_online_store("item", events.items)  # the catalogue the use case joins at serving time
    service = store.get_feature_service("purchase_ranking")
    rows = [{"customer_id": customer}]
    served = store.get_online_features(features=service, entity_rows=rows, full_feature_names=True).to_dict()
    columns = ["item_id", "quantity", "item_description", "item_price", "mask"]
    frame = pd.DataFrame({c: served[f"customer_purchases__{c}"][0] for c in columns})
    print(f"\nUse case 'purchase_ranking' for customer {customer} (padded to 10, quantity > 0, items joined):")
    print("    " + frame.head(6).to_string(index=False).replace("\n", "\n    "))
    timings = []
    for _ in range(300):
        start = time.perf_counter()
        store.get_online_features(features=service, entity_rows=rows, full_feature_names=True)
        timings.append((time.perf_counter() - start) * 1000)
    quantiles = statistics.quantiles(timings, n=100)
    print(f"  served in p50 {quantiles[49]:.2f} ms, p99 {quantiles[98]:.2f} ms over {len(timings)} requests")


def check_consistency(store: FeatureStore, customers: List[int], started: datetime, out: Path) -> None:
    """`feast-sequence consistency` on this run's logs of `purchase_ranking`: each logged response
    recomputed by the offline engine (Spark) at its request time; the report is an HTML page."""
    from feast_sequence.serving import serving_log
    from feast_sequence.transformations.consistency_job import run_consistency

    service = store.get_feature_service("purchase_ranking")
    store.get_online_features(
        features=service, entity_rows=[{"customer_id": int(c)} for c in customers], full_feature_names=True
    )
    serving_log.flush()
    print("\nChecking this run's logged responses of 'purchase_ranking' against the offline engine ...")
    run = run_consistency(store, out, start=started, use_cases=["purchase_ranking"])
    for view, stats in run.summary["use_cases"]["purchase_ranking"]["views"].items():
        print(
            f"  {view}: {stats['rows']:,} logged rows, exact match {stats['exact_match_rate']:.1%}, "
            f"edit distance mean {stats['edit_distance']['mean']:.2f}"
        )
    print(f"  gate {'passed' if run.passed else 'FAILED'} in {run.seconds:.0f} s")
    print(f"\nConsistency report built from this run's own serving logs: {run.report.resolve()}")
