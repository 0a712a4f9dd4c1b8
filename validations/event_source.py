"""Suite for a sequence view's raw events (its batch source or a batch about to be indexed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import pandas as pd

from feast_sequence.definitions.element_types import ELEMENT_TYPES
from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.offline.indexing import identity_columns
from feast_sequence.validations._runner import ValidationReport, run_suite

_TYPES = {t: list(e.ge_types) for t, e in ELEMENT_TYPES.items()}


@dataclass(frozen=True)
class EventSourceChecks:
    """What plausible events look like. ``now`` defaults to the validation time."""

    earliest: datetime = datetime(2000, 1, 1, tzinfo=timezone.utc)
    max_future_skew: timedelta = timedelta(minutes=5)
    allowed_values: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    value_ranges: Mapping[str, Tuple[Optional[float], Optional[float]]] = field(default_factory=dict)
    max_duplicate_rate: float = 0.01
    now: Optional[datetime] = None


def expectations(settings: SequenceSettings, checks: EventSourceChecks) -> List[Any]:
    import great_expectations as gx

    ts = settings.timestamp_field
    now = checks.now or datetime.now(timezone.utc)
    out: List[Any] = []
    for key, _ in settings.join_keys:
        out.append(gx.expectations.ExpectColumnValuesToNotBeNull(column=key, meta={"why": "events need an entity key"}))
    out.append(gx.expectations.ExpectColumnValuesToNotBeNull(column=ts, meta={"why": "events need a timestamp"}))
    out.append(
        gx.expectations.ExpectColumnValuesToBeBetween(
            column=ts,
            min_value=pd.Timestamp(checks.earliest),
            max_value=pd.Timestamp(now + checks.max_future_skew),
            meta={"why": f"timestamps must lie between {checks.earliest:%Y-%m-%d} and now + {checks.max_future_skew}"},
        )
    )
    for f in settings.event_fields:
        out.append(gx.expectations.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=_TYPES[f.value_type]))
    for name, values in checks.allowed_values.items():
        out.append(gx.expectations.ExpectColumnValuesToBeInSet(column=name, value_set=list(values)))
    for name, (low, high) in checks.value_ranges.items():
        out.append(gx.expectations.ExpectColumnValuesToBeBetween(column=name, min_value=low, max_value=high))
    identity = [k for k, _ in settings.join_keys] + identity_columns(settings)
    out.append(
        gx.expectations.ExpectCompoundColumnsToBeUnique(
            column_list=identity,
            mostly=1.0 - checks.max_duplicate_rate,
            meta={"why": f"at most {checks.max_duplicate_rate:.1%} of events may repeat an identity"},
        )
    )
    return out


def validate_event_source(
    settings: SequenceSettings,
    events: Any,
    checks: EventSourceChecks = EventSourceChecks(),
    report_dir: Optional[Path] = None,
) -> ValidationReport:
    """``events``: a pandas or Spark DataFrame with the view's join keys, timestamp and fields."""
    frame = events.toPandas() if hasattr(events, "toPandas") else events.copy()
    ts = settings.timestamp_field
    frame[ts] = pd.to_datetime(frame[ts], utc=True, errors="coerce")
    return run_suite(f"{settings.view_name}_event_source", frame, expectations(settings, checks), report_dir)


def findings(report: ValidationReport) -> Dict[str, Optional[int]]:
    """Failed expectations by name and column, with their unexpected counts (for summaries)."""
    return {f"{f.expectation}:{f.column}": f.unexpected for f in report.failures}
