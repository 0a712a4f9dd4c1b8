"""A Spark standalone cluster on loopback (a master and N workers, each its own JVM), for tests and
benchmarks: executors run in their own processes and Python workers, as on a real cluster.

pyspark's pip package has ``bin/spark-class`` but no ``sbin/start-*.sh``, so the daemons are started
with ``spark-class org.apache.spark.deploy.master.Master`` / ``...worker.Worker`` directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, List, Optional, Type

from feast_sequence.testing.local_redis import free_port


def spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


class DaemonExited(RuntimeError):
    """A Spark daemon ended while the cluster was starting (a port taken, or a failure: its log)."""


class NotOurMaster(Exception):
    """What answered on the master's web UI port is not this cluster's master."""


class SparkStandalone:
    """``with SparkStandalone(workers=2) as cluster:`` then ``spark.master: cluster.master_url``."""

    def __init__(self, workers: int = 2, cores: int = 1, memory: str = "1g", timeout_s: float = 120.0):
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.timeout_s = timeout_s
        self.port = free_port()
        self.webui_port = free_port()
        self._processes: List[subprocess.Popen[bytes]] = []
        self._dir = tempfile.TemporaryDirectory(prefix="fsq-spark-")

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def __enter__(self) -> "SparkStandalone":
        # A daemon refuses a taken port (spark.port.maxRetries=0) instead of moving to the next one:
        # a master that moved would leave its status URL answered by whatever took its port.
        env = {
            **os.environ,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": self._dir.name,
            "SPARK_DAEMON_JAVA_OPTS": "-Dspark.port.maxRetries=0",
        }
        try:
            self._start_master(env)
            for index in range(self.workers):
                work = Path(self._dir.name) / f"worker-{index}"
                self._start(
                    "org.apache.spark.deploy.worker.Worker",
                    [
                        self.master_url,
                        "--host",
                        "127.0.0.1",
                        "--cores",
                        str(self.cores),
                        "--memory",
                        self.memory,
                        "--webui-port",
                        str(free_port()),
                        "--work-dir",
                        str(work),
                    ],
                    env,
                )
            self._wait(lambda status: status.get("aliveworkers", 0) >= self.workers, f"{self.workers} workers")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_master(self, env: Any) -> None:
        """Start the master; on ports taken between choosing and binding them (the master exits),
        again on new ones, up to 5 times."""
        for attempt in range(5):
            self._start(
                "org.apache.spark.deploy.master.Master",
                ["--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.webui_port)],
                env,
            )
            try:
                self._wait(lambda status: True, "the master to answer")
                return
            except DaemonExited:
                if attempt == 4:
                    raise
                self._processes.clear()
                self.port, self.webui_port = free_port(), free_port()

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None:
        self.stop()

    def status(self) -> Any:
        """The master's status (its web UI's JSON); raises ``NotOurMaster`` when something else
        answers on its port, or the master not yet with its JSON."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.webui_port}/json/", timeout=5) as response:
            body = response.read().decode()
        try:
            status = json.loads(body)
        except ValueError as error:
            raise NotOurMaster(f"not the master's JSON on port {self.webui_port}: {body[:80]!r}") from error
        if not isinstance(status, dict) or status.get("url") != self.master_url:
            raise NotOurMaster(f"another master's status on port {self.webui_port}: {str(status)[:80]}")
        return status

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self._processes):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
        self._processes.clear()
        self._dir.cleanup()

    def _start(self, main_class: str, arguments: List[str], env: Any) -> None:
        log = open(Path(self._dir.name) / f"{main_class.rsplit('.', 1)[-1]}-{len(self._processes)}.log", "wb")
        with log:
            self._processes.append(
                subprocess.Popen(
                    [str(spark_class()), main_class, *arguments], env=env, stdout=log, stderr=subprocess.STDOUT
                )
            )

    def _wait(self, ready: Any, what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            for process in self._processes:
                if process.poll() is not None:
                    raise DaemonExited(f"A Spark daemon exited (code {process.returncode}) before {what}.")
            try:
                if ready(self.status()):
                    return
            except (OSError, NotOurMaster):  # not up yet, or its port answered by another server
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Timed out after {self.timeout_s} s waiting for {what}.")
            time.sleep(0.5)
