"""Consistency: logged online responses against the offline engine at their request times.

    feast-sequence consistency --repo feature_repo --use-case purchase_ranking \\
        --start 2026-01-01T00:00 --end 2026-01-02T00:00 --out reports/consistency

For each logged row of each use case (default: every use case with a ``logging_config``), the
offline point-in-time engine (Spark when the offline store is Spark) recomputes the served sequences
at the logged request time; the comparison (feast_sequence.monitoring.consistency) is reported per
use case and view in ``report.html``, ``summary.json`` and ``rows.parquet`` under ``--out``, and
gated: exit code 1 when a view's exact-match rate is under ``--min-match-rate``, or when a use case
logged nothing in the range (unless ``--allow-empty``), with the Great Expectations suite
``validations/consistency_summary.py``'s result. Rows served by another configuration of the use case are
reported as configuration changes, not as skew. See docs/monitoring.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd
import pyarrow as pa
from feast import FeatureStore

from feast_sequence.definitions.use_case import is_use_case
from feast_sequence.errors import SequenceConfigurationError
from feast_sequence.monitoring.consistency import check_use_case
from feast_sequence.monitoring.report import SUMMARY_FILE, Thresholds, causes_text, summarize, write_report
from feast_sequence.offline.spark import spark_session, uses_spark
from feast_sequence.serving.log_files import log_path, read_file_logs
from feast_sequence.serving.serving_log import LOG_TIMESTAMP
from feast_sequence.transformations._job import EPOCH, report
from feast_sequence.validations._runner import ValidationReport
from feast_sequence.validations.consistency_summary import validate_consistency


@dataclass(frozen=True)
class ConsistencyRun:
    summary: Dict[str, Any]
    report: Path
    validation: ValidationReport
    rows: int
    seconds: float

    @property
    def passed(self) -> bool:
        return bool(self.summary["passed"]) and self.validation.success


def logged_use_cases(store: FeatureStore, names: Sequence[str] = ()) -> List[Any]:
    """The named use cases, or every use case that logs; each must have a ``logging_config``."""
    services = [store.get_feature_service(n) for n in names] if names else store.list_feature_services()
    chosen = [s for s in services if is_use_case(s) and (names or s.logging_config is not None)]
    for service in chosen:
        if service.logging_config is None:
            raise SequenceConfigurationError(f"Use case '{service.name}' has no logging_config: it logs nothing.")
    return chosen


def read_logs(store: FeatureStore, service: Any, start: datetime, end: datetime) -> pa.Table:
    """A use case's log rows logged in [start, end): read by Spark when the offline store is Spark."""
    from feast.infra.offline_stores.file_source import FileLoggingDestination

    destination = service.logging_config.destination
    if not isinstance(destination, FileLoggingDestination):
        raise SequenceConfigurationError(
            f"Use case '{service.name}': the consistency job reads file log destinations, "
            f"not {type(destination).__name__}."
        )
    config = store.config
    folder = log_path(config, destination)
    if not uses_spark(config) or not any(folder.rglob("*.parquet")):
        return read_file_logs(config, destination, start, end)
    from pyspark.sql import functions as F

    spark = spark_session(config)
    frame = spark.read.option("mergeSchema", "true").parquet(str(folder))
    frame = frame.where((F.col(LOG_TIMESTAMP) >= F.lit(start)) & (F.col(LOG_TIMESTAMP) < F.lit(end)))
    table: pa.Table = frame.toArrow()
    return table


def run_consistency(
    store: FeatureStore,
    out_dir: Path,
    start: datetime = EPOCH,
    end: Optional[datetime] = None,
    use_cases: Sequence[str] = (),
    thresholds: Thresholds = Thresholds(),  # noqa: B008  (a frozen value object)
    data_docs: bool = False,
) -> ConsistencyRun:
    began = time.perf_counter()
    checked_at = datetime.now(timezone.utc)
    end = end or checked_at
    checks = [
        check_use_case(store, service, read_logs(store, service, start, end))
        for service in logged_use_cases(store, use_cases)
    ]
    summary = summarize(checks, start, end, checked_at, thresholds)
    rows = pd.concat([c.rows for c in checks], ignore_index=True) if checks else pd.DataFrame()
    page = write_report(summary, rows, out_dir)
    validation = validate_consistency(
        summary, thresholds.min_match_rate, out_dir / "validation" if data_docs else None, thresholds.allow_empty
    )
    summary["validation"] = {"suite": validation.suite, "success": validation.success, "text": str(validation)}
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    logged = sum(c.rows["log_row"].nunique() for c in checks if len(c.rows))
    return ConsistencyRun(summary, page, validation, int(logged), time.perf_counter() - began)


def print_summary(run: ConsistencyRun) -> None:
    """One line per use case and view, the validation report, and where the report is."""
    for name, use_case in run.summary["use_cases"].items():
        for view, stats in use_case["views"].items():
            report(
                "consistency",
                f"{name}/{view}",
                f"{stats['rows']:,} rows, exact match {stats['exact_match_rate']:.2%}, "
                f"online-only events {stats['online_only_events']:,}, offline-only {stats['offline_only_events']:,}, "
                f"enrichment mismatches {stats['enrichment_mismatches']:,}; differing events: {causes_text(stats)}",
            )
        report("consistency", name, f"configuration changes: {use_case['configuration_changes']:,} rows")
    for failure in run.summary["failures"]:
        report("consistency", "gate", f"failed: {failure}")
    print(run.validation, flush=True)
    report("consistency", "report", f"{run.report} ({run.rows:,} logged rows in {run.seconds:.1f} s)")
