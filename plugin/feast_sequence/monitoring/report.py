"""The consistency report: a JSON summary per use case and view, a threshold gate, and an HTML page
with plots (inline SVG drawn here: no plotting library to install)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd

from feast_sequence.monitoring.consistency import UseCaseCheck

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
ROWS_FILE = "rows.parquet"


#: What each cause column of a view's summary counts, in the report's words (docs/monitoring.md).
CAUSES = {
    "offline_only_lost": "never pushed or lost",
    "offline_only_late": "pushed after the request",
    "offline_only_displaced": "displaced online by events the batch lacks",
    "online_only_unbatched": "missing from the batch source",
    "online_only_ahead": "timestamped after the request",
    "online_only_displaced": "displaced offline by events online lacks",
}


@dataclass(frozen=True)
class Thresholds:
    """The gate: every view of every use case must reach ``min_match_rate`` (exact matches among the
    rows compared), and every use case checked must have logged rows in the range unless
    ``allow_empty``; configuration changes are reported, never failed on."""

    min_match_rate: float = 0.99
    allow_empty: bool = False


def summarize(
    checks: Sequence[UseCaseCheck], start: datetime, end: datetime, checked_at: datetime, thresholds: Thresholds
) -> Dict[str, Any]:
    use_cases: Dict[str, Any] = {}
    failures: List[str] = []
    if not checks and not thresholds.allow_empty:
        failures.append("no use case has a logging_config: nothing was checked (pass --allow-empty to accept)")
    for check in checks:
        rows = check.rows
        if not len(rows) and not thresholds.allow_empty:
            failures.append(
                f"use case '{check.name}': no logged rows from {start.isoformat()} to {end.isoformat()}, so "
                "nothing was checked: check the range and that the use case serves with a sample_rate above 0 "
                "(pass --allow-empty to accept)"
            )
        changed = rows[rows["configuration_changed"]]
        compared = rows[~rows["configuration_changed"]]
        views: Dict[str, Any] = {}
        for view, group in compared.groupby("view", sort=False):
            summary = _view_summary(group)
            views[str(view)] = summary
            if summary["exact_match_rate"] < thresholds.min_match_rate:
                failures.append(
                    f"use case '{check.name}', view '{view}': exact-match rate {summary['exact_match_rate']:.2%} "
                    f"< {thresholds.min_match_rate:.2%}"
                )
        use_cases[check.name] = {
            "version": check.version,
            "logged_rows": int(sum(check.logged_versions.values())),
            "configuration_changes": int(changed["log_row"].nunique()),
            "logged_versions": check.logged_versions,
            "views": views,
        }
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "checked_at": checked_at.isoformat(),
        "thresholds": {"min_match_rate": thresholds.min_match_rate, "allow_empty": thresholds.allow_empty},
        "passed": not failures,
        "failures": failures,
        "use_cases": use_cases,
    }


def _view_summary(group: pd.DataFrame) -> Dict[str, Any]:
    total = len(group)
    buckets = (
        group.set_index("request_time")["exact_match"].astype(float).resample(_bucket(group)).agg(["mean", "count"])
    )
    buckets = buckets[buckets["count"] > 0]
    return {
        "rows": total,
        "exact_matches": int(group["exact_match"].sum()),
        "exact_match_rate": float(group["exact_match"].mean()) if total else 1.0,
        "length_diff": _distribution(group["length_diff"]),
        "edit_distance": _distribution(group["edit_distance"]),
        "inserts": int(group["inserts"].sum()),
        "deletes": int(group["deletes"].sum()),
        "online_only_events": int(group["online_only"].sum()),
        "offline_only_events": int(group["offline_only"].sum()),
        **{cause: int(group[cause].sum()) for cause in CAUSES},
        "enrichment_mismatches": int(group["enrichment_mismatches"].sum()),
        "online_lag_s": _lag(group["online_lag_s"]),
        "match_rate_over_time": [[t.isoformat(), float(r["mean"]), int(r["count"])] for t, r in buckets.iterrows()],
    }


def _bucket(group: pd.DataFrame) -> str:
    span = group["request_time"].max() - group["request_time"].min() if len(group) else pd.Timedelta(0)
    for limit, rule in ((pd.Timedelta(hours=2), "1min"), (pd.Timedelta(days=2), "1h")):
        if span <= limit:
            return rule
    return "1D"


def _distribution(values: pd.Series) -> Dict[str, Any]:
    counts = values.astype(int).value_counts().sort_index()
    return {
        "mean": float(values.mean()) if len(values) else 0.0,
        "min": int(values.min()) if len(values) else 0,
        "max": int(values.max()) if len(values) else 0,
        "histogram": {str(k): int(v) for k, v in counts.items()},
    }


def _lag(values: pd.Series) -> Dict[str, Any]:
    present = values.dropna()
    return {
        "rows": int(len(present)),
        "median": float(present.median()) if len(present) else None,
        "max": float(present.max()) if len(present) else None,
    }


def write_report(summary: Dict[str, Any], rows: pd.DataFrame, out_dir: Path) -> Path:
    """``summary.json``, ``rows.parquet`` (the per-row results) and ``report.html`` in ``out_dir``;
    returns the HTML page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=False))
    rows.to_parquet(out_dir / ROWS_FILE, index=False)
    page = out_dir / REPORT_FILE
    page.write_text(render_html(summary))
    return page


def render_html(summary: Dict[str, Any]) -> str:
    verdict = "passed" if summary["passed"] else "FAILED"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>feast-sequence consistency</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
        ".ok{color:#1a7f37}.bad{color:#c62828}.plots{display:flex;gap:1.5em;flex-wrap:wrap}</style></head><body>",
        "<h1>Online/offline consistency</h1>",
        f"<p>Logs from {_e(summary['start'])} to {_e(summary['end'])}, checked {_e(summary['checked_at'])}. "
        f"Gate (exact-match rate &ge; {summary['thresholds']['min_match_rate']:.0%} per view): "
        f"<b class='{'ok' if summary['passed'] else 'bad'}'>{verdict}</b></p>",
    ]
    parts.extend(f"<p class='bad'>{_e(f)}</p>" for f in summary["failures"])
    for name, use_case in summary["use_cases"].items():
        parts.append(f"<h2>Use case {_e(name)}</h2>")
        parts.append(
            f"<p>{use_case['logged_rows']:,} logged rows; version {_e(use_case['version'])}. "
            f"Configuration changes (rows served by another version, not compared): "
            f"<b>{use_case['configuration_changes']:,}</b></p>"
        )
        parts.append(_view_table(use_case["views"]))
        for view, stats in use_case["views"].items():
            parts.append(f"<h3>{_e(name)} / {_e(view)}</h3><div class='plots'>")
            parts.append(_bars("Edit distance (deletes + inserts)", stats["edit_distance"]["histogram"]))
            parts.append(_bars("Length difference (online - offline)", stats["length_diff"]["histogram"]))
            parts.append(_line("Exact-match rate over time", stats["match_rate_over_time"]))
            parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _view_table(views: Dict[str, Any]) -> str:
    head = (
        "<table><tr><th>view</th><th>rows</th><th>exact match</th><th>mean edit distance</th><th>inserts</th>"
        "<th>deletes</th><th>online-only events</th><th>offline-only events</th>"
        + "".join(f"<th>{_e(meaning)}</th>" for meaning in CAUSES.values())
        + "<th>enrichment mismatches</th><th>online lag of late pushes (max s)</th></tr>"
    )
    rows = []
    for view, s in views.items():
        css = "ok" if s["exact_match_rate"] >= 1.0 else "bad"
        rows.append(
            f"<tr><th>{_e(view)}</th><td>{s['rows']:,}</td><td class='{css}'>{s['exact_match_rate']:.2%}</td>"
            f"<td>{s['edit_distance']['mean']:.2f}</td><td>{s['inserts']:,}</td><td>{s['deletes']:,}</td>"
            f"<td>{s['online_only_events']:,}</td><td>{s['offline_only_events']:,}</td>"
            + "".join(f"<td>{s[cause]:,}</td>" for cause in CAUSES)
            + f"<td>{s['enrichment_mismatches']:,}</td><td>{_num(s['online_lag_s']['max'])}</td></tr>"
        )
    return head + "".join(rows) + "</table>"


def causes_text(stats: Dict[str, Any]) -> str:
    """A view's differing events by cause, for one line of text: the causes that counted any."""
    counted = [f"{stats[cause]:,} {meaning}" for cause, meaning in CAUSES.items() if stats[cause]]
    return "; ".join(counted) if counted else "none"


_W, _H, _PAD = 360, 200, 34


def _bars(title: str, histogram: Dict[str, int]) -> str:
    """A bar chart of a histogram (keys are the integer values), as inline SVG."""
    items: List[Tuple[int, int]] = sorted((int(k), v) for k, v in histogram.items())
    svg = [_frame(title)]
    if items:
        top = max(v for _, v in items)
        width = (_W - 2 * _PAD) / len(items)
        for i, (key, count) in enumerate(items):
            height = (_H - 2 * _PAD) * count / top
            x = _PAD + i * width
            y = _H - _PAD - height
            svg.append(
                f"<rect x='{x + 1:.1f}' y='{y:.1f}' width='{max(width - 2, 1):.1f}' height='{height:.1f}' "
                f"fill='{'#1a7f37' if key == 0 else '#c62828'}'><title>{key}: {count:,} rows</title></rect>"
                f"<text x='{x + width / 2:.1f}' y='{_H - _PAD + 14}' font-size='11' text-anchor='middle'>{key}</text>"
                f"<text x='{x + width / 2:.1f}' y='{y - 3:.1f}' font-size='10' text-anchor='middle'>{count:,}</text>"
            )
    svg.append("</svg>")
    return "".join(svg)


def _line(title: str, points: List[List[Any]]) -> str:
    """The exact-match rate (0-100%) per time bucket, as inline SVG."""
    svg = [_frame(title)]
    svg.append(
        f"<text x='4' y='{_PAD + 4}' font-size='10'>100%</text><text x='4' y='{_H - _PAD}' font-size='10'>0%</text>"
    )
    if points:
        step = (_W - 2 * _PAD) / max(len(points) - 1, 1)
        coords = [(_PAD + i * step, _H - _PAD - (_H - 2 * _PAD) * rate) for i, (_, rate, _) in enumerate(points)]
        svg.append(
            "<polyline fill='none' stroke='#1f5fbf' stroke-width='2' points='"
            + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            + "'/>"
        )
        for (x, y), (when, rate, count) in zip(coords, points):
            svg.append(
                f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='#1f5fbf'>"
                f"<title>{_e(when)}: {rate:.1%} of {count:,}</title></circle>"
            )
        svg.append(f"<text x='{_PAD}' y='{_H - _PAD + 14}' font-size='10'>{_e(points[0][0][:16])}</text>")
        if len(points) > 1:
            svg.append(
                f"<text x='{_W - _PAD}' y='{_H - _PAD + 14}' font-size='10' text-anchor='end'>"
                f"{_e(points[-1][0][:16])}</text>"
            )
    svg.append("</svg>")
    return "".join(svg)


def _frame(title: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}' viewBox='0 0 {_W} {_H}'>"
        f"<rect width='{_W}' height='{_H}' fill='white' stroke='#ddd'/>"
        f"<text x='{_W / 2}' y='18' font-size='13' text-anchor='middle'>{_e(title)}</text>"
        f"<line x1='{_PAD}' y1='{_H - _PAD}' x2='{_W - _PAD}' y2='{_H - _PAD}' stroke='#888'/>"
    )


def _e(text: Any) -> str:
    return html.escape(str(text))


def _num(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:,.0f}"


def overview_svg(summary: Dict[str, Any]) -> str:
    """The report's figures and plots as one standalone SVG picture (for docs and dashboards)."""
    blocks: List[str] = []
    y = 30
    lines = [f"Online/offline consistency: gate {'passed' if summary['passed'] else 'FAILED'}"]
    for name, use_case in summary["use_cases"].items():
        lines.append(
            f"use case {name}: {use_case['logged_rows']:,} logged rows, "
            f"{use_case['configuration_changes']:,} configuration changes"
        )
        for view, s in use_case["views"].items():
            lines.append(
                f"  {view}: exact match {s['exact_matches']:,}/{s['rows']:,} ({s['exact_match_rate']:.0%}), "
                f"deletes {s['deletes']:,}, inserts {s['inserts']:,}, online-only {s['online_only_events']:,}, "
                f"offline-only {s['offline_only_events']:,}, enrichment mismatches {s['enrichment_mismatches']:,}"
            )
            lines.append(f"    differing events: {causes_text(s)}")
    for line in lines:
        blocks.append(f"<text x='10' y='{y}' font-size='13' xml:space='preserve'>{_e(line)}</text>")
        y += 20
    for name, use_case in summary["use_cases"].items():
        for view, stats in use_case["views"].items():
            plots = [
                _bars(f"{name}/{view}: edit distance", stats["edit_distance"]["histogram"]),
                _bars(f"{name}/{view}: length difference", stats["length_diff"]["histogram"]),
                _line(f"{name}/{view}: exact-match rate", stats["match_rate_over_time"]),
            ]
            for index, plot in enumerate(plots):
                blocks.append(plot.replace("<svg ", f"<svg x='{10 + index * (_W + 10)}' y='{y}' ", 1))
            y += _H + 10
    width = 3 * (_W + 10) + 10
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{y + 10}' font-family='sans-serif'>"
        f"<rect width='{width}' height='{y + 10}' fill='white'/>" + "".join(blocks) + "</svg>"
    )
