"""A new repository on the Spark offline store: relative paths, pandas-written parquet, single-file
sources and FileSources, each either working or refused with one line that says what to do."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from feast import Entity, FeatureStore, Field, FileSource, PushSource, ValueType
from feast.data_source import PushMode
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Int32, String

from feast_sequence import SequenceFeatureView
from feast_sequence.errors import SequenceConfigurationError
from feast_sequence.examples.retail import write_repo_data
from feast_sequence.offline.sources import checked_source

from repos import FEAST, feast_apply, sequence_online, spark_offline, write_repo

NOW = datetime.now(timezone.utc).replace(microsecond=0)
FEATURES = """
from datetime import timedelta
from feast import Entity, Field, PushSource, ValueType
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Int32, String
from feast_sequence import SequenceFeatureView

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
purchase_push = PushSource(
    name="purchase_push",
    batch_source=SparkSource(name="purchases", path="data/purchases", file_format="parquet",
                             timestamp_field="event_timestamp"),
)
customer_purchases = SequenceFeatureView(
    name="customer_purchases", entities=[customer], source=purchase_push,
    schema=[Field(name="item_id", dtype=String), Field(name="quantity", dtype=Int32)],
    max_length=50, ttl=timedelta(days=30),
)
"""


def events(*rows) -> pd.DataFrame:
    """Purchases as pandas makes them: nanosecond timestamps."""
    frame = pd.DataFrame(rows, columns=["customer_id", "item_id", "quantity", "event_timestamp"])
    return frame.astype({"quantity": "int32", "event_timestamp": "datetime64[ns, UTC]"})


def spark_repo(path: Path, connection: str = "localhost:1") -> Path:
    return write_repo(path, "shop", sequence_online(connection), offline=spark_offline())


def test_relative_spark_paths_resolve_against_the_repository(tmp_path, monkeypatch):
    config = FeatureStore(repo_path=str(spark_repo(tmp_path / "shop"))).config
    (tmp_path / "shop/data/purchases").mkdir()
    monkeypatch.chdir(tmp_path.parent)  # anywhere but the repository
    relative = SparkSource(name="p", path="data/purchases", file_format="parquet", timestamp_field="ts")
    assert checked_source(config, relative).path == str(tmp_path / "shop/data/purchases")
    assert relative.path == "data/purchases"  # the registry's object keeps the path as written
    for elsewhere in (str(tmp_path / "shop/data/purchases"), "s3a://bucket/purchases"):
        source = SparkSource(name="p", path=elsewhere, file_format="parquet", timestamp_field="ts")
        assert checked_source(config, source).path == elsewhere


def test_spark_written_int96_timestamps_are_not_taken_for_nanoseconds(tmp_path):
    """Spark writes INT96 timestamps by default; pyarrow reads them as nanoseconds, Spark reads them fine."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = FeatureStore(repo_path=str(spark_repo(tmp_path / "shop"))).config
    folder = tmp_path / "shop/data/purchases"
    folder.mkdir()
    times = pa.array([datetime(2024, 1, 1, tzinfo=timezone.utc)], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"ts": times}), folder / "part-0.parquet", use_deprecated_int96_timestamps=True)
    source = SparkSource(name="p", path=str(folder), file_format="parquet", timestamp_field="ts")
    assert checked_source(config, source).path == str(folder)
    pd.DataFrame({"ts": pd.to_datetime(["2024-01-01"], utc=True)}).to_parquet(folder / "part-1.parquet")
    (folder / "part-0.parquet").unlink()  # the check reads the first file's schema
    with pytest.raises(SequenceConfigurationError, match="column 'ts' holds nanosecond timestamps"):
        checked_source(config, source)


def test_a_file_source_on_spark_is_refused_with_what_to_use(tmp_path):
    config = FeatureStore(repo_path=str(spark_repo(tmp_path / "shop"))).config
    with pytest.raises(SequenceConfigurationError, match=r"'purchases' is a FileSource.*use SparkSource\("):
        checked_source(config, FileSource(name="purchases", path="data/p.parquet", timestamp_field="ts"))


def test_pandas_parquet_is_refused_at_feast_apply_in_one_line_saying_how_to_write_it(tmp_path):
    repo = spark_repo(tmp_path / "shop")
    (repo / "features.py").write_text(FEATURES)
    (repo / "data/purchases").mkdir()
    events((1, "a", 1, NOW)).to_parquet(repo / "data/purchases/part-0.parquet")
    applied = subprocess.run([FEAST, "-c", str(repo), "apply"], capture_output=True, text=True)
    output = applied.stdout + applied.stderr
    assert applied.returncode != 0
    assert "Illegal Parquet type" not in output and "Unable to find table" not in output
    errors = [line for line in output.splitlines() if line.startswith("feast_sequence.errors.")]
    assert errors == [
        "feast_sequence.errors.SequenceConfigurationError: SparkSource 'purchases' "
        f"({repo}/data/purchases): column 'event_timestamp' holds nanosecond timestamps, which Spark "
        'cannot read; write it in microseconds: df.to_parquet(path, coerce_timestamps="us", '
        "allow_truncated_timestamps=True)."
    ]


def _store(tmp_path: Path, connection: str, path: str) -> FeatureStore:
    """The quickstart's view on Spark, its source at ``path`` (relative), applied."""
    repo = spark_repo(tmp_path / "shop", connection)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    push = PushSource(
        name="purchase_push",
        batch_source=SparkSource(name="purchases", path=path, file_format="parquet", timestamp_field="event_timestamp"),
    )
    view = SequenceFeatureView(
        name="customer_purchases",
        entities=[customer],
        source=push,
        schema=[Field(name="item_id", dtype=String), Field(name="quantity", dtype=Int32)],
        max_length=50,
        ttl=timedelta(days=30),
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([customer, push, view])
    return store


def test_offline_pushes_reach_a_folder_source_and_refuse_a_single_file_one(tmp_path, redis_server, monkeypatch):
    earlier = events((1, "a", 1, NOW - timedelta(days=2)))
    (tmp_path / "shop/data/purchases").mkdir(parents=True)
    earlier.to_parquet(tmp_path / "shop/data/purchases/part-0.parquet", coerce_timestamps="us")
    earlier.to_parquet(tmp_path / "shop/data/one_file.parquet", coerce_timestamps="us")
    monkeypatch.chdir(tmp_path.parent)  # relative source paths must not depend on the working directory

    store = _store(tmp_path, redis_server.connection_string, "data/purchases")
    store.push("purchase_push", events((1, "b", 2, NOW - timedelta(days=1))), to=PushMode.ONLINE_AND_OFFLINE)
    entity_df = pd.DataFrame({"customer_id": [1], "event_timestamp": [NOW]})
    training = store.get_historical_features(entity_df=entity_df, features=["customer_purchases:item_id"]).to_df()
    assert [list(items) for items in training["item_id"]] == [
        ["b", "a"]
    ]  # the pushed event is in the source, read by Spark

    single = _store(tmp_path, redis_server.connection_string, "data/one_file.parquet")
    with pytest.raises(SequenceConfigurationError, match="is one file: move the file into a folder"):
        single.push("purchase_push", events((2, "c", 1, NOW)), to=PushMode.ONLINE_AND_OFFLINE)
    assert len(pd.read_parquet(tmp_path / "shop/data/one_file.parquet")) == 1  # the file is untouched


# --- a push-only view started from nothing --------------------------------------------------------


def _zero_row_pandas_file(path: Path) -> None:
    """What a newcomer writes as a seed: a zero-row frame from pandas (its empty text and timestamp
    columns have no type, and its timestamps would be nanoseconds)."""
    path.parent.mkdir(parents=True)
    events().iloc[:0].astype({"item_id": object}).to_parquet(path)


@pytest.mark.parametrize("start", ["missing folder", "empty folder", "zero-row pandas file"])
def test_a_view_with_no_history_applies_and_takes_offline_pushes(tmp_path, redis_server, redis_client, capfd, start):
    repo = spark_repo(tmp_path / "shop", redis_server.connection_string)
    (repo / "features.py").write_text(FEATURES)
    if start == "empty folder":
        (repo / "data/purchases").mkdir()
    elif start == "zero-row pandas file":
        _zero_row_pandas_file(repo / "data/purchases/part-0.parquet")
    output = feast_apply(repo)
    assert "UNABLE_TO_INFER_SCHEMA" not in output and "Traceback" not in output
    assert f"wrote {repo}/data/purchases/part-00000-empty.parquet, an empty file of its columns" in output
    assert "an empty file of its columns" not in feast_apply(repo)  # written once

    store = FeatureStore(repo_path=str(repo))
    entity_df = pd.DataFrame({"customer_id": [1], "event_timestamp": [NOW]})
    training = store.get_historical_features(entity_df=entity_df, features=["customer_purchases:item_id"]).to_df()
    assert [list(items) for items in training["item_id"]] == [[]]  # no history: no events, no error
    capfd.readouterr()
    store.push("purchase_push", events((1, "a", 1, NOW - timedelta(days=1))), to=PushMode.ONLINE_AND_OFFLINE)
    assert capfd.readouterr().out == ""  # Feast's Spark store printed its temporary file's name
    training = store.get_historical_features(entity_df=entity_df, features=["customer_purchases:item_id"]).to_df()
    assert [list(items) for items in training["item_id"]] == [["a"]]
    online = store.get_online_features(features=["customer_purchases:item_id"], entity_rows=[{"customer_id": 1}])
    assert online.to_dict()["item_id"] == [["a"]]


def test_a_file_source_with_no_file_yet_applies_and_takes_offline_pushes(tmp_path, redis_server, redis_client):
    repo = write_repo(tmp_path / "shop", "shop", sequence_online(redis_server.connection_string))
    features = FEATURES.replace(
        'SparkSource(name="purchases", path="data/purchases", file_format="parquet",',
        'FileSource(name="purchases", path="data/purchases.parquet",',
    ).replace("from feast import Entity,", "from feast import Entity, FileSource,")
    (repo / "features.py").write_text(features)
    output = feast_apply(repo)
    assert f"wrote {repo}/data/purchases.parquet, an empty file of its columns" in output
    store = FeatureStore(repo_path=str(repo))
    store.push("purchase_push", events((1, "a", 1, NOW - timedelta(days=1))), to=PushMode.ONLINE_AND_OFFLINE)
    entity_df = pd.DataFrame({"customer_id": [1], "event_timestamp": [NOW]})
    training = store.get_historical_features(entity_df=entity_df, features=["customer_purchases:item_id"]).to_df()
    assert [list(items) for items in training["item_id"]] == [["a"]]


def test_feast_apply_on_the_example_prints_no_spark_banner_or_progress_bar(tmp_path, retail_events, redis_server):
    """Feast's source check starts Spark; it finds the quiet session started first (offline/spark.py)."""
    repo = tmp_path / "feature_repo"
    example = Path(__file__).resolve().parents[1] / "feature_repo"
    shutil.copytree(example, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    write_repo_data(retail_events, repo / "data")
    output = feast_apply(repo, {"FEAST_SEQUENCE_REDIS": redis_server.connection_string})
    assert "Deploying infrastructure for customer_purchases" in output
    assert "an empty file of its columns" not in output  # sources with events are left alone
    for noise in ("log4j", "Setting default log level", "[Stage ", "NativeCodeLoader"):
        assert noise not in output, output
