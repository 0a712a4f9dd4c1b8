"""Suite for the consistency job's results: each view of each use case reaches the exact-match rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd

from feast_sequence.validations._runner import ValidationReport, run_suite


def consistency_stats(summary: Dict[str, Any]) -> pd.DataFrame:
    """One row per (use case, view) compared: its exact-match rate, rows and configuration changes."""
    records: List[Dict[str, Any]] = []
    for name, use_case in summary["use_cases"].items():
        for view, stats in use_case["views"].items():
            records.append(
                {
                    "use_case_view": f"{name}/{view}",
                    "exact_match_rate": stats["exact_match_rate"],
                    "rows": stats["rows"],
                    "configuration_changes": use_case["configuration_changes"],
                }
            )
    return pd.DataFrame(records, columns=["use_case_view", "exact_match_rate", "rows", "configuration_changes"])


def validate_consistency(
    summary: Dict[str, Any], min_match_rate: float, report_dir: Optional[Path] = None
) -> ValidationReport:
    import great_expectations as gx

    stats = consistency_stats(summary)
    out: List[Any] = [
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="exact_match_rate",
            min_value=min_match_rate,
            max_value=1.0,
            meta={"why": f"served sequences must equal the offline engine's in {min_match_rate:.0%} of rows"},
        ),
        gx.expectations.ExpectColumnValuesToBeUnique(column="use_case_view"),
    ]
    return run_suite("online_offline_consistency", stats, out, report_dir)
