"""The batch sources of a repository on the Spark offline store: paths resolved against the
repository, and the mistakes a new repository makes refused with one line that says what to do.

Feast hands a ``SparkSource``'s path to Spark as it is, so a relative path resolves against the
process's working directory, and Feast's own checks are bare asserts (a ``FileSource``) or pages of
Spark errors ending in "Unable to find table" (parquet with nanosecond timestamps). The provider
passes every source through here before Feast's offline store sees it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

from feast.data_source import DataSource, PushSource
from feast.repo_config import RepoConfig

from feast_sequence.errors import SequenceConfigurationError
from feast_sequence.offline.spark import uses_spark

#: How to write parquet that Spark reads, for the errors below.
WRITE_MICROSECONDS = 'df.to_parquet(path, coerce_timestamps="us", allow_truncated_timestamps=True)'


def _spark_source_class() -> Any:
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    return SparkSource


def local_path(source: DataSource) -> Optional[str]:
    """A ``SparkSource``'s path when it is on the local file system (no URI scheme such as
    ``s3a://`` or ``hdfs://``; ``file://`` counts as local), else None."""
    path: Optional[str] = getattr(source, "path", None) if isinstance(source, _spark_source_class()) else None
    if not path or getattr(source, "table_format", None) is not None:
        return None
    scheme = urlparse(path).scheme
    if scheme == "file":
        return urlparse(path).path
    return path if len(scheme) <= 1 else None  # a one-letter scheme is a Windows drive


def resolved_source(config: RepoConfig, source: DataSource) -> DataSource:
    """``source``, or for a ``SparkSource`` with a relative local path, a copy whose path is
    resolved against the repository (``config.repo_path``), as Feast's ``FileSource`` does."""
    path = local_path(source)
    repo = getattr(config, "repo_path", None)
    if path is None or Path(path).is_absolute() or repo is None:
        return source
    resolved = _spark_source_class().from_proto(source.to_proto())
    resolved.spark_options.path = str((Path(repo) / path).resolve())
    return resolved  # type: ignore[no-any-return]


def checked_view(config: RepoConfig, view: Any) -> Any:
    """``view``, or a copy whose batch source is ``checked_source`` (the registry's stays as written)."""
    source = getattr(view, "batch_source", None)
    checked = checked_source(config, source) if source is not None else None
    if checked is source:
        return view
    view = copy.copy(view)
    view.batch_source = checked
    return view


def checked_source(config: RepoConfig, source: DataSource) -> DataSource:
    """``resolved_source``, after refusing what the Spark offline store cannot read, with what to do."""
    if not uses_spark(config) or isinstance(source, PushSource):
        return resolved_source(config, source)
    if not isinstance(source, _spark_source_class()):
        raise SequenceConfigurationError(
            f"Data source '{source.name}' is a {type(source).__name__}, but the offline store is Spark, "
            'which reads only SparkSource: use SparkSource(name=..., path=..., file_format="parquet", '
            "timestamp_field=...) from feast.infra.offline_stores.contrib.spark_offline_store.spark_source "
            "(or set offline_store: type: file in feature_store.yaml)."
        )
    source = resolved_source(config, source)
    path = local_path(source)
    if path is not None and getattr(source, "file_format", None) == "parquet":
        _refuse_nanoseconds(source.name, path)
    return source


def _refuse_nanoseconds(name: str, path: str) -> None:
    """Spark cannot read parquet timestamps in nanoseconds (pandas writes them by default)."""
    import pyarrow.dataset as ds

    if not Path(path).exists():
        raise SequenceConfigurationError(
            f"SparkSource '{name}': path {path!r} does not exist (relative paths are resolved against "
            "the repository's folder)."
        )
    # Spark writes INT96 timestamps by default, which it reads back fine but pyarrow reports as
    # nanoseconds: read those as microseconds, so only true INT64 nanoseconds are refused.
    parquet = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(coerce_int96_timestamp_unit="us"))
    schema = ds.dataset(path, format=parquet).schema  # the first file's schema: no data is read
    for field in schema:
        if getattr(field.type, "unit", None) == "ns":
            raise SequenceConfigurationError(
                f"SparkSource '{name}' ({path}): column '{field.name}' holds nanosecond timestamps, which "
                f"Spark cannot read; write it in microseconds: {WRITE_MICROSECONDS}."
            )


def refuse_single_file_offline_push(config: RepoConfig, view: Any) -> None:
    """A push to the offline store appends files to a ``SparkSource``'s path, which must be a folder."""
    path = local_path(view.batch_source) if uses_spark(config) else None
    if path is not None and Path(path).is_file():
        raise SequenceConfigurationError(
            f"View '{view.name}': PushMode.ONLINE_AND_OFFLINE / OFFLINE appends parquet files to its "
            f"SparkSource '{view.batch_source.name}', whose path {path!r} is one file: move the file into "
            "a folder and point path at the folder (its files are read as one table), then re-apply. "
            "Nothing was written offline; pushes are idempotent, so push these events again."
        )
