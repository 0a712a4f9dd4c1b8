"""Test scaffolding in one place: Feast repositories written from dicts, the definitions tests and
benchmarks share (push sources, the click view, view sets), and waiting for a condition."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import pandas as pd
import yaml
from feast import Entity, FeatureStore, Field, FileSource, PushSource, ValueType
from feast.types import Float32, Int32, Int64, String

from feast_sequence import SequenceFeatureView
from feast_sequence.definitions.settings import EventField, SequenceSettings

SEQUENCE_PROVIDER = "feast_sequence.SequenceProvider"
SEQUENCE_STORE = "feast_sequence.online_store.SequenceRedisOnlineStore"
REGISTRY = "data/registry.db"
FEAST = str(Path(sys.executable).parent / "feast")
TIMESTAMP_DTYPE = "datetime64[us, UTC]"

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
#: The purchase events the benchmarks generate (``item_id``, ``quantity``, ``price``).
PURCHASE_FIELDS = [
    Field(name="item_id", dtype=String),
    Field(name="quantity", dtype=Int64),
    Field(name="price", dtype=Float32),
]


def sequence_online(connection: str, **options: Any) -> Dict[str, Any]:
    """The ``online_store`` section of this plugin's store on ``connection``, with ``options``."""
    return {"type": SEQUENCE_STORE, "connection_string": connection, **options}


def feast_redis_repo(path: Path, project: str, connection: str) -> Path:
    """A repository on Feast's own provider and built-in Redis store, the benchmarks' baseline."""
    return write_repo(path, project, {"type": "redis", "connection_string": connection}, provider="local")


def spark_offline(**conf: str) -> Dict[str, Any]:
    """An ``offline_store`` section for Spark in local mode (the example repository's settings), plus ``conf``."""
    return {
        "type": "spark",
        "spark_conf": {
            "spark.master": "local[2]",
            "spark.ui.enabled": "false",
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            **conf,
        },
    }


def write_repo(
    path: Path,
    project: str,
    online: Dict[str, Any],
    offline: Union[Dict[str, Any], str] = "file",
    registry: Union[Dict[str, Any], str] = REGISTRY,
    extra: Optional[Dict[str, Any]] = None,
    provider: str = SEQUENCE_PROVIDER,
) -> Path:
    """Write ``path``/feature_store.yaml (``extra`` overrides top-level keys) and ``path``/data; return ``path``."""
    (path / "data").mkdir(parents=True, exist_ok=True)
    config = {
        "project": project,
        "provider": provider,
        "registry": registry,
        "online_store": online,
        "offline_store": {"type": offline} if isinstance(offline, str) else offline,
        "entity_key_serialization_version": 3,
        **(extra or {}),
    }
    (path / "feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def applied_store(path: Path, project: str, online: Dict[str, Any], objects: List[Any], **repo: Any) -> FeatureStore:
    """A FeatureStore on a repository written by ``write_repo(path, project, online, **repo)``, ``objects`` applied."""
    store = FeatureStore(repo_path=str(write_repo(path, project, online, **repo)))
    store.apply(objects)
    return store


def reopened(store: FeatureStore, **online: Any) -> FeatureStore:
    """A new FeatureStore on ``store``'s (applied) repository, its ``online_store`` options updated with ``online``."""
    update_config(Path(store.repo_path), ["online_store"], online)
    return FeatureStore(repo_path=str(store.repo_path))


def update_config(repo: Path, section: List[str], values: Dict[str, Any]) -> None:
    """Update the mapping at the keys ``section`` of ``repo``/feature_store.yaml with ``values``."""
    path = repo / "feature_store.yaml"
    config = yaml.safe_load(path.read_text())
    mapping = config
    for key in section:
        mapping = mapping[key]
    mapping.update(values)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def feast_apply(repo: Path, env: Optional[Dict[str, str]] = None) -> str:
    """Run the `feast apply` CLI on ``repo`` with ``env`` added to this environment; assert it
    succeeds; return what it printed (standard output, then standard error)."""
    applied = subprocess.run(
        [FEAST, "-c", str(repo), "apply"], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return applied.stdout + applied.stderr


def push_source(
    name: str,
    data_dir: Path = Path("data"),
    columns: Optional[Dict[str, str]] = None,
    timestamp_field: str = "ts",
    **batch: Any,
) -> PushSource:
    """Push source ``name``_push on the file source ``name``_src at ``data_dir``/``name``.parquet
    (``batch``: more FileSource arguments, e.g. field_mapping). With ``columns`` (column -> pandas
    dtype), an empty parquet file of those columns and the timestamp column is written there first:
    Feast reads a file source's schema at apply."""
    path = data_dir / f"{name}.parquet"
    if columns is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        dtypes = {**columns, timestamp_field: TIMESTAMP_DTYPE}
        pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()}).to_parquet(path)
    return PushSource(
        name=f"{name}_push",
        batch_source=FileSource(name=f"{name}_src", path=str(path), timestamp_field=timestamp_field, **batch),
    )


def sequence_views(views: Dict[str, Dict[str, Any]], **common: Any) -> List[SequenceFeatureView]:
    """The view set a test or benchmark parametrises: one SequenceFeatureView per item of ``views``
    (name -> its own arguments: max_length, dedup_by, ttl, enrich, source...) over the ``common`` ones."""
    return [SequenceFeatureView(name=name, **{**common, **own}) for name, own in views.items()]


def click_view(**overrides: Any) -> SequenceFeatureView:
    """The 'clicks' view of (item, n) events on ``user``, max_length 10, with ``overrides``: for
    definition checks (its source's file is never read)."""
    args: Dict[str, Any] = dict(
        name="clicks",
        entities=[user],
        source=push_source("clicks"),
        schema=[Field(name="item", dtype=String), Field(name="n", dtype=Int32)],
        max_length=10,
    )
    return SequenceFeatureView(**{**args, **overrides})


def click_settings(**overrides: Any) -> SequenceSettings:
    """The settings of a 'clicks' view of (kind, n) events on user_id, max_length 10, with ``overrides``:
    for the pure cores, which take settings rather than a view."""
    args: Dict[str, Any] = dict(
        view_name="clicks",
        join_keys=(("user_id", ValueType.INT64),),
        fields=(EventField("kind", ValueType.STRING), EventField("n", ValueType.INT32)),
        timestamp_field="ts",
        max_length=10,
        dedup_by=(),
        ttl_us=None,
    )
    return SequenceSettings(**{**args, **overrides})


def online_chunks(
    store: FeatureStore, features: Any, key: str, ids: List[Any], size: int
) -> Iterator[Tuple[int, List[Any], Dict[str, List[Any]]]]:
    """Online features for the entities ``key`` = ``ids``, read ``size`` at a time: (offset, ids, values)."""
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        online = store.get_online_features(
            features=features, entity_rows=[{key: i} for i in chunk], full_feature_names=True
        ).to_dict()
        yield start, chunk, online


def wait_until(
    condition: Callable[[], Any],
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
    process: Optional[subprocess.Popen[Any]] = None,
) -> None:
    """Poll ``condition`` until true; AssertionError naming ``what`` on timeout or when ``process`` ends first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (exit code {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
