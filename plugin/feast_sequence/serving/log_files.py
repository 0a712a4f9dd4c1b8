"""Serving logs on a file destination, whatever the offline store.

Feast writes ``FileLoggingDestination`` logs only with its file offline store; its Spark store has
no log writing at all. The provider writes them here for every offline store, as parquet that Spark
reads (microsecond timestamps), so the example repository (Spark) logs to files too.
"""

from __future__ import annotations

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
    """Append ``logs`` (a table, or a parquet folder) to the destination as new parquet files."""
    table = logs if isinstance(logs, pa.Table) else pq.read_table(logs)
    folder = log_path(config, destination)
    folder.mkdir(parents=True, exist_ok=True)
    if not destination.partition_by:  # one file per flush: the cheapest write (it runs beside requests)
        pq.write_table(table, folder / f"{uuid.uuid4().hex}.parquet", coerce_timestamps="us")
        return
    ds.write_dataset(
        table,
        base_dir=str(folder),
        basename_template=f"{uuid.uuid4().hex}-{{i}}.parquet",
        partitioning=destination.partition_by,
        partitioning_flavor="hive",
        format="parquet",
        file_options=ds.ParquetFileFormat().make_write_options(coerce_timestamps="us"),
        existing_data_behavior="overwrite_or_ignore",
        use_threads=False,
    )


def read_file_logs(
    config: Any, destination: Any, start: Optional[datetime] = None, end: Optional[datetime] = None
) -> pa.Table:
    """The log rows written to the destination so far, logged in [start, end) if given. Files written
    by other configurations of the use case may have other columns: the schemas are unified."""
    folder = log_path(config, destination)
    files = sorted(str(f) for f in folder.rglob("*.parquet")) if folder.exists() else []
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
