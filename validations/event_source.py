"""Suite for a sequence view's raw events (its batch source or a batch about to be indexed)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    """What plausible events look like. ``now`` defaults to the validation time.

    ``max_duplicate_rate``: events that repeat an identity (the view's ``dedup_by`` columns, else
    every field and the timestamp) are collapsed by the store, so by default (None) they are
    reported, not failed; normal for a ``dedup_by`` view fed at least once. Set a rate to fail when
    more rows than that share are in repeated groups.
    """

    earliest: datetime = datetime(2000, 1, 1, tzinfo=timezone.utc)
    max_future_skew: timedelta = timedelta(minutes=5)
    allowed_values: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    value_ranges: Mapping[str, Tuple[Optional[float], Optional[float]]] = field(default_factory=dict)
    max_duplicate_rate: Optional[float] = None
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
    if checks.max_duplicate_rate is not None:
        out.append(
            gx.expectations.ExpectCompoundColumnsToBeUnique(
                column_list=_identity(settings),
                mostly=1.0 - checks.max_duplicate_rate,
                meta={"why": f"at most {checks.max_duplicate_rate:.1%} of events may repeat an identity"},
            )
        )
    return out


def _identity(settings: SequenceSettings) -> List[str]:
    return [k for k, _ in settings.join_keys] + identity_columns(settings)


def duplicate_note(settings: SequenceSettings, frame: pd.DataFrame, checks: EventSourceChecks) -> Optional[str]:
    """What the report says about events that repeat an identity (None when none do)."""
    identity = _identity(settings)
    repeats = int(frame.duplicated(identity, keep="first").sum()) if len(frame) else 0
    if not repeats:
        return None
    share = repeats / len(frame)
    if settings.dedup_by:
        what = f"repeat a dedup_by identity ({', '.join(settings.dedup_by)}) of an earlier event"
        kept = "the store keeps one event per identity"
    else:
        what = "repeat an earlier event exactly (entity, fields and timestamp)"
        kept = "the store keeps each event once"
    if checks.max_duplicate_rate is None:
        gate = "reported, not failed (set max_duplicate_rate, or --max-duplicate-rate, to bound it)"
    else:
        gate = f"checked against max_duplicate_rate {checks.max_duplicate_rate:.1%} above"
    return f"{repeats:,} events ({share:.1%}) {what}: {kept}; {gate}"


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
    report = run_suite(f"{settings.view_name}_event_source", frame, expectations(settings, checks), report_dir)
    note = duplicate_note(settings, frame, checks)
    return replace(report, notes=(*report.notes, note)) if note else report


def findings(report: ValidationReport) -> Dict[str, Optional[int]]:
    """Failed expectations by name and column, with their unexpected counts (for summaries)."""
    return {f"{f.expectation}:{f.column}": f.unexpected for f in report.failures}
