"""Local parquet batch sources (a ``SparkSource`` folder, a ``FileSource`` file): typed from their
view when they hold no events yet, and appended to by offline pushes without Spark.

A sequence view started from nothing: its batch source, missing or holding no rows yet, is given
one empty file typed from the view at `feast apply`. Spark cannot infer the schema of an empty
folder (``UNABLE_TO_INFER_SCHEMA``), and an offline push casts its rows to the types of the files
already there, so a zero-row file written by pandas (whose empty text and timestamp columns have no
type) fails the first push (``CAST_INVALID_INPUT``). A typed empty file answers both: training data
and materialization read no events, and pushes with ``PushMode.ONLINE_AND_OFFLINE`` append beside
it. Files that hold rows are never touched.

An offline push to a local ``SparkSource`` folder is one new parquet file, cast to the folder's
column types: Feast's Spark store would write a temporary file, print its name, and start Spark
jobs to read it back and append it.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq
from feast import FileSource
from feast.repo_config import RepoConfig
from feast.type_map import feast_value_type_to_pa

from feast_sequence.definitions.settings import sequence_settings
from feast_sequence.errors import SequenceInputError
from feast_sequence.offline.sources import local_path, resolved_source

#: The typed empty file's name in a source folder (Spark skips names starting with "_" or ".").
EMPTY_FILE = "part-00000-empty.parquet"

_log = logging.getLogger(__name__)


def source_file_path(config: RepoConfig, source: Any) -> Optional[Path]:
    """Where a local parquet batch source is (a ``SparkSource`` folder or file, or a ``FileSource``),
    resolved against the repository; None for other sources (tables, queries, remote stores)."""
    if isinstance(source, FileSource):
        uri: str = source.path
        file_format = source.file_options.file_format
        if "://" in uri or (file_format is not None and type(file_format).__name__ != "ParquetFormat"):
            return None
        return Path(FileSource.get_uri_for_file_path(getattr(config, "repo_path", None), uri))
    path = local_path(resolved_source(config, source))
    if path is None or getattr(source, "file_format", None) != "parquet":
        return None
    return Path(path)


def data_files(path: Path) -> List[Path]:
    """The parquet files Spark and pandas read at ``path`` (a file, or a folder's files at any depth,
    without the ``_``/``.`` files Spark skips)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    )


def has_no_history(path: Path) -> bool:
    """Whether the source at ``path`` holds no event yet: missing, an empty folder, or zero-row files."""
    return all(pq.ParquetFile(f).metadata.num_rows == 0 for f in data_files(path))


def source_schema(view: Any) -> pa.Schema:
    """The batch source's columns as a sequence view reads and pushes them: join keys, event fields
    and the timestamp (UTC microseconds, what Spark reads), under the source's own column names."""
    settings = sequence_settings(view)
    source = view.batch_source
    to_column = {feature: column for column, feature in (source.field_mapping or {}).items()}
    fields = [pa.field(k, feast_value_type_to_pa(t)) for k, t in settings.join_keys]
    fields += [pa.field(f.name, feast_value_type_to_pa(f.value_type)) for f in settings.event_fields]
    fields.append(pa.field(settings.timestamp_field, pa.timestamp("us", tz="UTC")))
    if source.created_timestamp_column:
        fields.append(pa.field(source.created_timestamp_column, pa.timestamp("us", tz="UTC")))
    return pa.schema([f.with_name(to_column.get(f.name, f.name)) for f in fields])


def write_empty_source(config: RepoConfig, view: Any) -> Optional[Path]:
    """Give a sequence view's local batch source that holds no event a typed empty file (module
    docstring); returns the file written, or None when the source has events or is not local.

    Zero-row files already there are replaced (they hold nothing); a folder gets ``EMPTY_FILE``,
    a ``FileSource`` naming a file gets that file."""
    path = source_file_path(config, view.batch_source)
    if path is None or not has_no_history(path):
        return None
    schema = source_schema(view)
    empties = data_files(path)
    if empties and all(_typed_as(pq.read_schema(f), schema) for f in empties):
        return None  # written here before, or typed by hand: nothing to do
    if empties:
        # Columns the view does not know keep the type the file gave them.
        known = set(schema.names)
        extra = [f for f in pq.read_schema(empties[0]) if f.name not in known]
        schema = pa.schema(list(schema) + extra)
    if isinstance(view.batch_source, FileSource) and not path.is_dir():
        target = path
    else:
        target = path / EMPTY_FILE
    for empty in empties:
        empty.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(schema.empty_table(), target)
    _log.warning(
        "Batch source '%s' of view '%s' holds no events yet: wrote %s, an empty file of its columns, "
        "so training data reads no events and offline pushes add files beside it.",
        view.batch_source.name,
        view.name,
        target,
    )
    return target


def _typed_as(found: pa.Schema, wanted: pa.Schema) -> bool:
    """Whether a file has every wanted column, of the wanted type."""
    return all(found.get_field_index(f.name) >= 0 and found.field(f.name).type == f.type for f in wanted)


def append_to_folder(path: Path, view: Any, table: pa.Table) -> None:
    """Add ``table`` to the local source folder ``path`` as one new parquet file, its columns in the
    folder's order and cast to the folder's types (timestamps in microseconds, which Spark reads).
    The file appears whole: it is written under a name readers skip, then renamed."""
    schema = pq.read_schema(data_files(path)[0])
    columns = []
    for field in schema:
        wanted = field.type
        if pa.types.is_timestamp(wanted):
            wanted = pa.timestamp("us", tz=wanted.tz)
        try:
            columns.append(table.column(field.name).cast(wanted))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise SequenceInputError(
                f"View '{view.name}': column '{field.name}' cannot be written to its batch source "
                f"'{view.batch_source.name}' ({path}) as {wanted}: {error}. Nothing was written offline."
            ) from error
    name = f"part-{uuid.uuid4().hex}.parquet"
    hidden = path / f".{name}"
    pq.write_table(pa.table(columns, names=schema.names), hidden)
    hidden.rename(path / name)
