"""Spark for sequence views: whether the offline store is Spark, and the session the engines and jobs
run on, with Python workers that can import feast_sequence."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict

from feast.repo_config import RepoConfig

#: Spark's setting for the Python executable of its workers.
PYTHON_CONF = "spark.pyspark.python"
#: The driver JVM's options: where a quiet session names its log4j2 configuration.
JAVA_OPTIONS_CONF = "spark.driver.extraJavaOptions"
#: Spark's `[Stage 0:>   (0 + 1) / 1]` bar; the jobs show their own progress.
CONSOLE_PROGRESS_CONF = "spark.ui.showConsoleProgress"
#: Warnings and errors only: no banner, no hostname or native-library notices (offline/log4j2.properties).
QUIET_LOG4J = Path(__file__).with_name("log4j2.properties")


def quiet_java_options() -> str:
    """JVM options that give a Spark driver feast-sequence's quiet logging: for ``spark.driver.extraJavaOptions``,
    or ``SPARK_SUBMIT_OPTS`` of a process that starts Spark itself (``feast apply``)."""
    # Spark reads spark.* JVM system properties as settings; a session's own setting wins.
    return f"-Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()} -D{CONSOLE_PROGRESS_CONF}=false"


def uses_spark(config: RepoConfig) -> bool:
    """Whether the repository's offline store is Feast's Spark store, named by ``type: spark`` or
    by its class path (``feast.infra.offline_stores.contrib.spark_offline_store.spark.SparkOfflineStore``,
    or a subclass whose name ends the same)."""
    # Every offline store config has a `type`: Feast chose the config class by it.
    kind: str = config.offline_store.type
    return kind == "spark" or kind.endswith("SparkOfflineStore")


def spark_session(config: RepoConfig, verbose: bool = False) -> Any:
    """The active Spark session, or a new one: from the Spark offline store's ``spark_conf`` when
    the offline store is Spark, else Spark's defaults.

    A new session logs quietly (warnings and errors, no banner, no console progress bar) unless
    ``verbose`` (Spark's default logging) or ``spark_conf`` configures its own log4j2 file or progress bar.

    A new session runs its Python workers with ``spark_conf``'s ``spark.pyspark.python``, else
    ``PYSPARK_PYTHON``, else this interpreter (the one that has feast_sequence), never whatever
    ``python3`` is first on PATH. An active session (started by Feast, or by the user) is used, with
    the same worker interpreter unless it names one itself.
    """
    from pyspark.sql import SparkSession

    starting = SparkSession.getActiveSession() is None
    if uses_spark(config):
        from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
            get_spark_session_or_start_new_with_repoconfig,
        )

        offline = config.offline_store
        conf = _with_worker_python(dict(offline.spark_conf or {}))
        if not verbose:
            conf = quiet_conf(conf)
        session = get_spark_session_or_start_new_with_repoconfig(offline.model_copy(update={"spark_conf": conf}))
    else:
        conf = _with_worker_python({})
        if not verbose:
            conf = quiet_conf(conf)
        builder = SparkSession.builder
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
    if starting or not _names_worker_python(session):
        # PySpark reads the workers' executable only from PYSPARK_PYTHON when the context starts
        # (spark.pyspark.python is for spark-submit); set it on this context, not on the process.
        # Functions shipped to workers afterwards use it.
        session.sparkContext.pythonExec = conf[PYTHON_CONF]
    return session


def _names_worker_python(session: Any) -> bool:
    """Whether an active session was told which Python its workers run (we then leave it alone)."""
    return bool(os.environ.get("PYSPARK_PYTHON") or session.conf.get(PYTHON_CONF, None))


def quiet_conf(spark_conf: Dict[str, str]) -> Dict[str, str]:
    """``spark_conf`` with quiet logging, unless it sets its own log4j2 configuration or progress bar."""
    options = spark_conf.get(JAVA_OPTIONS_CONF, "")
    quiet = dict(spark_conf)
    if "log4j" not in options:
        quiet[JAVA_OPTIONS_CONF] = f"{options} {quiet_java_options()}".strip()
    quiet.setdefault(CONSOLE_PROGRESS_CONF, "false")
    return quiet


def _with_worker_python(spark_conf: Dict[str, str]) -> Dict[str, str]:
    python = spark_conf.get(PYTHON_CONF) or os.environ.get("PYSPARK_PYTHON") or sys.executable
    return {**spark_conf, PYTHON_CONF: python}
