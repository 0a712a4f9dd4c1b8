"""Monitoring benchmarks: the request cost of serving logs, and the consistency job's throughput.

- ``serve_100_logged_p50_ratio``: p50 of a 100-entity request of a logged use case (every request
  sampled) over the same use case unlogged, timed alternately in the same run.
- ``consistency_rows_per_s``: logged rows the consistency job checks per second (file offline store,
  pandas engine; the offline retrieval, report and gate included; Great Expectations' one-off import
  excluded).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import pandas as pd
from feast import FeatureStore
from feast.data_source import PushMode
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination

TESTS = Path(__file__).resolve().parents[1]
USERS = 100
REQUESTS = 300


def _use_case(name: str, clicks: Any, items: Any, logging_config: Any) -> Any:
    from feast_sequence import SequenceSpec, SequenceUseCase, enrich

    import serving_repo

    spec = dict(serving_repo.RANKING, length=20)
    return SequenceUseCase(
        name=name,
        features=[clicks[["item_id", "kind", "n", "ts"]]],
        sequences={"clicks": SequenceSpec(**spec, enrich=[enrich(items, on="item_id", features=["title", "cost"])])},
        output="padded",
        logging_config=logging_config,
    )


def run(connection: str) -> Dict[str, float]:
    sys.path.insert(0, str(TESTS))
    from feast_sequence.serving import serving_log
    from feast_sequence.serving.log_files import read_file_logs
    from feast_sequence.transformations.consistency_job import run_consistency

    import serving_repo
    from repos import applied_store, sequence_online

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        data = root / "data"
        objects = serving_repo.objects(data)
        by_name = {o.name: o for o in objects}
        clicks, items = by_name["clicks"], by_name["items"]
        destination = FileLoggingDestination(path=str(data / "logs" / "logged"))
        logged = _use_case("logged", clicks, items, LoggingConfig(destination=destination, sample_rate=1.0))
        plain = _use_case("plain", clicks, items, None)
        store: FeatureStore = applied_store(
            root, "bench_monitoring", sequence_online(connection), [*objects, logged, plain]
        )
        now = pd.Timestamp.now(tz="UTC")
        store.push(
            "items_push", serving_repo.item_rows(40, now - pd.Timedelta(days=90)), to=PushMode.ONLINE_AND_OFFLINE
        )
        store.push("clicks_push", serving_repo.clicks(USERS * 40, USERS, now, seed=7), to=PushMode.ONLINE_AND_OFFLINE)
        serving_log.configure()
        rows = [{"user_id": u} for u in range(USERS)]
        services = {name: store.get_feature_service(name) for name in ("logged", "plain")}
        for _ in range(20):  # warm both paths (and start the flusher)
            for service in services.values():
                store.get_online_features(features=service, entity_rows=rows)
        times: Dict[str, List[float]] = {"logged": [], "plain": []}
        for _ in range(REQUESTS):
            for name, service in services.items():
                start = time.perf_counter()
                store.get_online_features(features=service, entity_rows=rows)
                times[name].append(time.perf_counter() - start)
        assert serving_log.flush(120)
        written = read_file_logs(store.config, destination).num_rows
        assert written == (REQUESTS + 20) * USERS, written

        import great_expectations  # noqa: F401  (a one-off import of several seconds, not per row)

        began = time.perf_counter()
        checked = run_consistency(store, Path(tmp) / "report", use_cases=["logged"])
        seconds = time.perf_counter() - began
        view = checked.summary["use_cases"]["logged"]["views"]["clicks"]
        assert view["rows"] == written, view
        return {
            "serve_100_logged_p50_ms": statistics.median(times["logged"]) * 1000,
            "serve_100_unlogged_p50_ms": statistics.median(times["plain"]) * 1000,
            "serve_100_logged_p50_ratio": statistics.median(times["logged"]) / statistics.median(times["plain"]),
            "consistency_rows": float(written),
            "consistency_exact_match_rate": view["exact_match_rate"],
            "consistency_rows_per_s": written / seconds,
        }
