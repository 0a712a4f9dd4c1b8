"""Suite for a training set from ``get_historical_features``: no leakage, bounded lengths, few empties."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

import pandas as pd

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.validations._runner import ValidationReport, run_suite


@dataclass(frozen=True)
class TrainingChecks:
    max_empty_share: float = 0.5


def training_stats(
    training: pd.DataFrame,
    timestamps_column: str,
    row_time_column: str = "event_timestamp",
) -> pd.DataFrame:
    """Per training row: its sequence length, whether it is empty, and whether any event in it is
    later than the row's own timestamp (leakage)."""
    row_times = pd.to_datetime(training[row_time_column], utc=True)
    leaks, lengths = [], []
    for times, row_time in zip(training[timestamps_column], row_times):
        stamps = pd.to_datetime(pd.Series(list(times), dtype=object), utc=True)
        leaks.append(bool((stamps > row_time).any()))
        lengths.append(len(stamps))
    return pd.DataFrame({"leaks": leaks, "length": lengths, "empty": [n == 0 for n in lengths]})


def validate_training(
    settings: SequenceSettings,
    training: pd.DataFrame,
    timestamps_column: str,
    checks: TrainingChecks = TrainingChecks(),
    row_time_column: str = "event_timestamp",
    report_dir: Optional[Path] = None,
) -> ValidationReport:
    """``timestamps_column``: the column holding the view's timestamp lists (request the view's
    timestamp field, e.g. ``customer_purchases:event_timestamp``)."""
    import great_expectations as gx

    stats = training_stats(training, timestamps_column, row_time_column)
    out: List[Any] = [
        gx.expectations.ExpectColumnValuesToBeInSet(
            column="leaks", value_set=[False], meta={"why": "an event later than its row leaks the future"}
        ),
        gx.expectations.ExpectColumnValuesToBeBetween(column="length", min_value=0, max_value=settings.max_length),
        gx.expectations.ExpectColumnMeanToBeBetween(
            column="empty",
            max_value=checks.max_empty_share,
            meta={"why": f"at most {checks.max_empty_share:.0%} empty sequences"},
        ),
    ]
    return run_suite(f"{settings.view_name}_training", stats, out, report_dir)
