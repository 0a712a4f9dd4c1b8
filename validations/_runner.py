"""Running one expectation suite on a pandas DataFrame with Great Expectations 1.x, and writing the
HTML report (GE Data Docs) to a folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import pandas as pd


@dataclass(frozen=True)
class Failure:
    expectation: str
    column: Optional[str]
    unexpected: Optional[int]
    details: str

    def __str__(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        count = f" ({self.unexpected:,} unexpected)" if self.unexpected is not None else ""
        return f"{self.expectation}{where}{count}{': ' + self.details if self.details else ''}"


@dataclass(frozen=True)
class ValidationReport:
    suite: str
    rows: int
    evaluated: int
    failures: List[Failure]
    report_path: Optional[Path]
    notes: Tuple[str, ...] = ()  # findings that do not fail the suite

    @property
    def success(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        head = f"suite {self.suite!r}: {self.evaluated} expectations on {self.rows:,} rows, "
        head += "passed" if self.success else f"{len(self.failures)} failed"
        lines = [head] + [f"  - {f}" for f in self.failures] + [f"  note: {n}" for n in self.notes]
        if self.report_path:
            lines.append(f"  report: {self.report_path}")
        return "\n".join(lines)


def run_suite(
    name: str, frame: pd.DataFrame, expectations: Sequence[Any], report_dir: Optional[Path] = None
) -> ValidationReport:
    """Validate ``frame`` against ``expectations``; with ``report_dir``, also build Data Docs there."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(report_dir))
    else:
        context = gx.get_context(mode="ephemeral")
    # GE draws a progress bar per metric computation (dozens per suite, each left on screen); the
    # report below is what the run says.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_or_update_pandas(f"{name}_source")
    asset = source.add_dataframe_asset(f"{name}_frame")
    batch = asset.add_batch_definition_whole_dataframe(f"{name}_batch")
    suite = gx.ExpectationSuite(name=name)
    for expectation in expectations:
        suite.add_expectation(expectation)
    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch, suite=suite)
    )
    actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if report_dir is not None else []
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(name=f"{name}_checkpoint", validation_definitions=[definition], actions=actions)
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    failures = []
    evaluated = 0
    for run in result.run_results.values():
        for outcome in run.results:
            evaluated += 1
            if not outcome.success:
                config = outcome.expectation_config
                failures.append(
                    Failure(
                        expectation=config.type,
                        column=config.kwargs.get("column") or _columns(config.kwargs),
                        unexpected=(outcome.result or {}).get("unexpected_count"),
                        details=config.meta.get("why", "") if config.meta else "",
                    )
                )
    path = None
    if report_dir is not None:
        sites = context.get_docs_sites_urls()
        path = Path(sites[0]["site_url"].replace("file://", "")) if sites else None
    return ValidationReport(name, len(frame), evaluated, failures, path)


def _columns(kwargs: dict) -> Optional[str]:
    columns = kwargs.get("column_list")
    return ",".join(columns) if columns else None
