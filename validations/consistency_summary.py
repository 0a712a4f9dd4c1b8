"""Suite for the consistency job's results: each view of each use case reaches the exact-match rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd

from feast_sequence.validations._runner import ValidationReport, run_suite

COLUMNS = ("use_case_view", "exact_match_rate", "rows", "logged_rows", "configuration_changes")


def consistency_stats(summary: Dict[str, Any]) -> pd.DataFrame:
    """One row per (use case, view) compared: its exact-match rate, rows, the use case's logged rows
    and configuration changes; a use case with no view compared has one row, its rate left empty."""
    records: List[Dict[str, Any]] = []
    for name, use_case in summary["use_cases"].items():
        common = {"logged_rows": use_case["logged_rows"], "configuration_changes": use_case["configuration_changes"]}
        for view, stats in use_case["views"].items():
            records.append(
                {
                    "use_case_view": f"{name}/{view}",
                    "exact_match_rate": stats["exact_match_rate"],
                    "rows": stats["rows"],
                }
                | common
            )
        if not use_case["views"]:
            records.append({"use_case_view": name, "exact_match_rate": None, "rows": 0} | common)
    return pd.DataFrame(records, columns=[*COLUMNS])


def validate_consistency(
    summary: Dict[str, Any], min_match_rate: float, report_dir: Optional[Path] = None, allow_empty: bool = False
) -> ValidationReport:
    """The suite on a summary; without ``allow_empty``, a use case that logged no row in the range (or
    no use case at all) fails it."""
    import great_expectations as gx

    stats = consistency_stats(summary)
    out: List[Any] = [
        gx.expectations.ExpectTableRowCountToBeBetween(
            min_value=0 if allow_empty else 1,
            meta={"why": "with no use case that logs, nothing is checked; the job's --allow-empty accepts it"},
        ),
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="logged_rows",
            min_value=0 if allow_empty else 1,
            meta={"why": "a range with no logged rows checks nothing; the job's --allow-empty accepts it"},
        ),
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="exact_match_rate",
            min_value=min_match_rate,
            max_value=1.0,
            meta={"why": f"served sequences must equal the offline engine's in {min_match_rate:.0%} of rows"},
        ),
        gx.expectations.ExpectColumnValuesToBeUnique(column="use_case_view"),
    ]
    return run_suite("online_offline_consistency", stats, out, report_dir)
