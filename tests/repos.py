"""Test scaffolding in one place: Feast repositories written from dicts, and waiting for a condition."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import yaml
from feast import FeatureStore

SEQUENCE_PROVIDER = "feast_sequence.SequenceProvider"
SEQUENCE_STORE = "feast_sequence.online_store.SequenceRedisOnlineStore"
REGISTRY = "data/registry.db"
FEAST = str(Path(sys.executable).parent / "feast")


def sequence_online(connection: str, **options: Any) -> Dict[str, Any]:
    """The ``online_store`` section of this plugin's store on ``connection``, with ``options``."""
    return {"type": SEQUENCE_STORE, "connection_string": connection, **options}


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
) -> Path:
    """Write ``path``/feature_store.yaml (``extra`` overrides top-level keys) and ``path``/data; return ``path``."""
    (path / "data").mkdir(parents=True, exist_ok=True)
    config = {
        "project": project,
        "provider": SEQUENCE_PROVIDER,
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
    path = Path(store.repo_path) / "feature_store.yaml"
    config = yaml.safe_load(path.read_text())
    config["online_store"].update(online)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return FeatureStore(repo_path=str(store.repo_path))


def feast_apply(repo: Path, env: Optional[Dict[str, str]] = None) -> None:
    """Run the `feast apply` CLI on ``repo`` with ``env`` added to this environment; assert it succeeds."""
    applied = subprocess.run(
        [FEAST, "-c", str(repo), "apply"], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr


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
