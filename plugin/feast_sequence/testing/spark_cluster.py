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
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": self._dir.name}
        try:
            self._start(
                "org.apache.spark.deploy.master.Master",
                ["--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.webui_port)],
                env,
            )
            self._wait(lambda status: True, "the master to answer")
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

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None:
        self.stop()

    def status(self) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.webui_port}/json/", timeout=5) as response:
            return json.loads(response.read().decode())

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
                    raise RuntimeError(f"A Spark daemon exited (code {process.returncode}) before {what}.")
            try:
                if ready(self.status()):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Timed out after {self.timeout_s} s waiting for {what}.")
            time.sleep(0.5)
