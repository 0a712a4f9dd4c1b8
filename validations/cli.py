"""``feast-sequence validate events|sequences|training``: run a suite, print its report, exit 1 on failure."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

import pandas as pd

from feast_sequence.storage.client import redis_client
from feast_sequence.transformations._job import EPOCH, add_common_arguments, open_view, parse_time
from feast_sequence.validations.event_source import EventSourceChecks, validate_event_source
from feast_sequence.validations.sequences import validate_sequences
from feast_sequence.validations.training import validate_training


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="feast-sequence validate", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["events", "sequences", "training"])
    add_common_arguments(parser)
    parser.add_argument("--report-dir", type=Path, help="folder for the HTML report (GE Data Docs)")
    parser.add_argument("--start", type=parse_time, help="events: from this time (default: the beginning)")
    parser.add_argument("--end", type=parse_time, help="events: up to this time (default: now)")
    parser.add_argument(
        "--max-duplicate-rate", type=float, default=0.01, help="events: largest share of repeated identities"
    )
    parser.add_argument("--sample", type=int, help="sequences: validate this many random entities (default: all)")
    parser.add_argument("--training", type=Path, help="training: a parquet file from get_historical_features")
    parser.add_argument("--timestamps-column", help="training: the column with the view's timestamp lists")
    args = parser.parse_args(argv)
    context = open_view(args.repo, args.view)
    settings = context.settings
    if args.dataset == "events":
        end = args.end or pd.Timestamp.now(tz="UTC").to_pydatetime()
        events = context.events(args.start or EPOCH, end)
        report = validate_event_source(
            settings, events, EventSourceChecks(max_duplicate_rate=args.max_duplicate_rate), args.report_dir
        )
    elif args.dataset == "sequences":
        client = redis_client(context.target.online_config)
        report = validate_sequences(
            settings, client, context.target.project, sample=args.sample, report_dir=args.report_dir
        )
    else:
        if not (args.training and args.timestamps_column):
            parser.error("training needs --training and --timestamps-column")
        report = validate_training(
            settings, pd.read_parquet(args.training), args.timestamps_column, report_dir=args.report_dir
        )
    print(report)
    return 0 if report.success else 1
