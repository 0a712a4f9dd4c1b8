"""Serving logs on a file destination, whatever the offline store.

Feast writes ``FileLoggingDestination`` logs only with its file offline store; its Spark store has
no log writing at all. The provider writes them here for every offline store, as parquet that Spark
reads (microsecond timestamps), so the example repository (Spark) logs to files too.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Union

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from feast.feature_logging import LOG_TIMESTAMP_FIELD


def log_path(config: Any, destination: Any) -> Path:
    """The destination's folder; a relative path is relative to the repository, as Feast has it."""
    path = Path(destination.path)
    if not path.is_absolute() and config.repo_path is not None:
        path = Path(config.repo_path) / path
    return path


def write_file_logs(config: Any, destination: Any, logs: Union[pa.Table, Path]) -> None:
    """Append ``logs`` (a table, or a parquet folder) to the destination as new parquet files.

    Other processes (each ``feast serve`` worker, a reader) share the folder, so a file appears only
    once whole: it is written under a hidden staging name and renamed into place (``os.replace`` is
    atomic), and readers skip hidden names. A reader never meets a half-written file."""
    table = logs if isinstance(logs, pa.Table) else pq.read_table(logs)
    folder = log_path(config, destination)
    folder.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    if not destination.partition_by:  # one file per flush: the cheapest write (it runs beside requests)
        staged = folder / f".{name}.parquet.tmp"
        pq.write_table(table, staged, coerce_timestamps="us")
        os.replace(staged, folder / f"{name}.parquet")
        return
    staging = folder / f".staging-{name}"
    ds.write_dataset(
        table,
        base_dir=str(staging),
        basename_template=f"{name}-{{i}}.parquet",
        partitioning=destination.partition_by,
        partitioning_flavor="hive",
        format="parquet",
        file_options=ds.ParquetFileFormat().make_write_options(coerce_timestamps="us"),
        existing_data_behavior="overwrite_or_ignore",
        use_threads=False,
    )
    for staged in staging.rglob("*.parquet"):
        target = folder / staged.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
    shutil.rmtree(staging)


def logged_files(config: Any, destination: Any) -> list[Path]:
    """The destination's whole log files, sorted; files being written have hidden names and are left
    out (``write_file_logs``), as Spark leaves them out of a folder it reads."""
    folder = log_path(config, destination)
    if not folder.exists():
        return []
    return sorted(
        f for f in folder.rglob("*.parquet") if not any(p.startswith(".") for p in f.relative_to(folder).parts)
    )


def read_file_logs(
    config: Any, destination: Any, start: Optional[datetime] = None, end: Optional[datetime] = None
) -> pa.Table:
    """The log rows written to the destination so far, logged in [start, end) if given. Files written
    by other configurations of the use case may have other columns: the schemas are unified."""
    files = [str(f) for f in logged_files(config, destination)]
    if not files:
        return pa.table({})
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    dataset = ds.dataset(files, schema=schema, format="parquet")
    condition = None
    if start is not None:
        condition = ds.field(LOG_TIMESTAMP_FIELD) >= pa.scalar(start, pa.timestamp("us", tz="UTC"))
    if end is not None:
        before_end = ds.field(LOG_TIMESTAMP_FIELD) < pa.scalar(end, pa.timestamp("us", tz="UTC"))
        condition = before_end if condition is None else condition & before_end
    return dataset.to_table(filter=condition)
