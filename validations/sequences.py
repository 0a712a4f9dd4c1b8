"""Suite for indexed sequences, read back from Redis for a sample (or all) of a view's entities."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import pandas as pd

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.storage.codec import NULL_DEFAULTS, decode_members, encode_columns, layout_for
from feast_sequence.storage.keys import view_scan_pattern, zset_key_of
from feast_sequence.storage.read import members as read_members
from feast_sequence.storage.read import stored_reads
from feast_sequence.storage.redis_io import execute
from feast_sequence.validations._runner import ValidationReport, run_suite


@dataclass(frozen=True)
class SequenceChecks:
    """``min_completeness``: field -> least share of events whose value is set (not the null default),
    for enriched fields. ``max_newest_age_seconds``: the newest event of the freshest sequence must be
    at most this old (a stalled writer shows up here)."""

    min_completeness: Mapping[str, float] = field(default_factory=dict)
    max_newest_age_seconds: Optional[float] = None
    now: Optional[datetime] = None


def sequence_stats(
    settings: SequenceSettings, client: Any, project: str, sample: Optional[int] = None, seed: int = 0
) -> pd.DataFrame:
    """One row per stored sequence: length, whether it is strictly ordered by the documented rule,
    repeated identities, oldest and newest event time, and per-field completeness."""
    # Any key of a sequence (tail, identity hash, block) names it; read it as serving does.
    keys = sorted(
        {zset_key_of(k) for k in client.scan_iter(match=view_scan_pattern(project, settings.view_name), count=1000)}
    )
    if sample is not None and len(keys) > sample:
        keys = random.Random(seed).sample(keys, sample)
    layout = layout_for(settings)
    rows: List[Dict[str, Any]] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        reads = stored_reads(settings, chunk)
        stored = execute(client, reads, "reading sequences to validate")
        for members in (sequence.members() for sequence in read_members(settings, reads, stored, fail_closed=True)):
            columns, times = decode_members(layout, members)
            filled = [
                [NULL_DEFAULTS[f.value_type] if v is None else v for v in c] for f, c in zip(settings.fields, columns)
            ]
            _, identities = encode_columns(layout, filled, times)
            identities = identities or members
            order = list(zip(times, identities))
            row = {
                "length": len(members),
                "ordered": all(a > b for a, b in zip(order, order[1:])),
                "repeated_identities": len(identities) - len(set(identities)),
                "oldest_us": min(times) if times else None,
                "newest_us": max(times) if times else None,
            }
            for f, column in zip(settings.fields, columns):
                default = NULL_DEFAULTS[f.value_type]
                row[f"complete_{f.name}"] = (
                    sum(v is not None and v != default for v in column) / len(column) if column else 1.0
                )
            rows.append(row)
    return pd.DataFrame(rows)


def validate_sequences(
    settings: SequenceSettings,
    client: Any,
    project: str,
    checks: SequenceChecks = SequenceChecks(),
    sample: Optional[int] = None,
    report_dir: Optional[Path] = None,
) -> ValidationReport:
    import great_expectations as gx

    stats = sequence_stats(settings, client, project, sample)
    now_us = int((checks.now or datetime.now(timezone.utc)).timestamp() * 1_000_000)
    stats["oldest_age_s"] = (now_us - stats["oldest_us"]) / 1e6 if len(stats) else []
    stats["newest_age_s"] = (now_us - stats["newest_us"]) / 1e6 if len(stats) else []
    out: List[Any] = [
        gx.expectations.ExpectColumnValuesToBeBetween(column="length", min_value=1, max_value=settings.max_length),
        gx.expectations.ExpectColumnValuesToBeInSet(
            column="ordered", value_set=[True], meta={"why": "newest first, ties by identity"}
        ),
        gx.expectations.ExpectColumnValuesToBeBetween(column="repeated_identities", min_value=0, max_value=0),
    ]
    if settings.ttl_us:
        out.append(
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="oldest_age_s",
                max_value=settings.ttl_us / 1e6,
                meta={"why": "nothing older than the TTL"},
            )
        )
    for name, share in checks.min_completeness.items():
        out.append(gx.expectations.ExpectColumnMeanToBeBetween(column=f"complete_{name}", min_value=share))
    if checks.max_newest_age_seconds is not None:
        out.append(
            gx.expectations.ExpectColumnMinToBeBetween(
                column="newest_age_s",
                max_value=checks.max_newest_age_seconds,
                meta={"why": "fresh events keep arriving"},
            )
        )
    return run_suite(f"{settings.view_name}_sequences", stats, out, report_dir)
