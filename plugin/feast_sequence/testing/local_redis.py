"""A private ``redis-server`` on a free loopback port, for the demo, tests and benchmarks.

Never a shared default instance: each ``LocalRedis`` gets its own port and data directory and is
stopped on exit. Append-only persistence can be switched on for restart tests, and a server can
start as the replica of another (``replica_of``) for replication and Sentinel tests.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, List, Optional, Type, cast

import redis

from feast_sequence.errors import SequenceConfigurationError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRedis:
    """Start with ``with LocalRedis() as r:``; ``r.connection_string`` is ``127.0.0.1:<port>``."""

    def __init__(
        self,
        appendonly: bool = False,
        port: Optional[int] = None,
        extra_args: Optional[List[str]] = None,
        replica_of: Optional[int] = None,
    ):
        """``replica_of``: the port of a loopback master to replicate from."""
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = list(extra_args or [])
        self.replica_of = replica_of
        self._dir = Path(tempfile.mkdtemp(prefix="feast-sequence-redis-"))
        self._process: Optional[subprocess.Popen[bytes]] = None

    @property
    def connection_string(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def start(self) -> "LocalRedis":
        binary = shutil.which("redis-server")
        if binary is None:
            raise SequenceConfigurationError(
                "redis-server is not installed. Install it (Debian/Ubuntu: "
                "'sudo apt-get install redis-server'), or set FEAST_SEQUENCE_REDIS=host:port "
                "to use an existing Redis."
            )
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self._dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--logfile",
            str(self._dir / "redis.log"),
            # A replica that connects is synced at once, not after Redis's default 5 s of waiting
            # for more replicas to share the transfer (any server may become a master on failover).
            "--repl-diskless-sync-delay",
            "0",
            *(["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else []),
            *self.extra_args,
        ]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except (redis.AuthenticationError, redis.ResponseError):
                return self  # up, and asking for credentials (a password or ACL test)
            except redis.ConnectionError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log = (self._dir / "redis.log").read_text() if (self._dir / "redis.log").exists() else ""
                    raise SequenceConfigurationError(  # noqa: B904  (the log says why; the timeout does not)
                        f"redis-server on port {self.port} did not start:\n{log[-2000:]}"
                    )
                time.sleep(0.02)

    def wait_until_replicating(self, timeout_seconds: float = 20) -> "LocalRedis":
        """Block until this replica's link to its master is up and the initial sync is done."""
        deadline, client = time.monotonic() + timeout_seconds, self.client()
        while cast(Dict[str, Any], client.info("replication")).get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise SequenceConfigurationError(
                    f"redis-server on port {self.port} did not finish syncing from its master within "
                    f"{timeout_seconds} s; see {self._dir / 'redis.log'}."
                )
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
