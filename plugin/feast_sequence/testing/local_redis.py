"""A private ``redis-server`` on a free loopback port, for the demo, tests and benchmarks.

Never a shared default instance: each ``LocalRedis`` gets its own port and data directory and is
stopped on exit, which deletes the directory (with ``redis.log``) unless the block failed: then it is
kept and its path printed. Append-only persistence can be switched on for restart tests, and a server
can start as the replica of another (``replica_of``) for replication and Sentinel tests.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, Iterator, List, Optional, Type, cast

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
        #: A port chosen here may be taken by another process before redis-server binds it: the
        #: first start then picks another. A port given, or a restart, keeps its port.
        self._may_move = port is None
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
        """Start redis-server and wait until it answers (30 s at most). The server that answers must
        be this one (its process id): on a port taken in the meantime, by another Redis or anything
        else, the first start moves to a new free port (up to 5 times) instead of using or failing on it."""
        for _ in range(5):
            if self._start_once():
                self._may_move = False
                return self
            if not self._may_move:
                break
            self.port = free_port()
        raise SequenceConfigurationError(f"redis-server on port {self.port} did not start: {self._log_tail()}")

    def _log_tail(self) -> str:
        log = self._dir / "redis.log"
        return log.read_text()[-2000:] if log.exists() else ""

    def _start_once(self) -> bool:
        """Start redis-server on ``port``: True once it answers, False if it exited (its port in use)."""
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
        deadline = time.monotonic() + 30
        while True:
            try:
                with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2) as probe:
                    server = cast(Dict[str, Any], probe.info("server"))
                if int(server["process_id"]) == self._process.pid:
                    return True
                try:
                    self._process.wait(timeout=10)  # another Redis answers on the port: ours cannot bind it
                except subprocess.TimeoutExpired:
                    return True  # ours keeps running: the one answering (started through a wrapper)
                return False
            except (redis.AuthenticationError, redis.ResponseError):
                return True  # up, and asking for credentials (a password or ACL test)
            except (redis.ConnectionError, redis.TimeoutError):  # not up yet, or not a Redis that answers
                if self._process.poll() is not None:
                    return False
                if time.monotonic() > deadline:
                    raise SequenceConfigurationError(  # noqa: B904  (the log says why; the timeout does not)
                        f"redis-server on port {self.port} did not start:\n{self._log_tail()}"
                    )
                time.sleep(0.02)

    @property
    def directory(self) -> Path:
        """Its data directory, with ``redis.log``."""
        return self._dir

    def wait_until_replicating(self, stall_seconds: float = 60) -> "LocalRedis":
        """Block until this replica holds everything its master (whichever it follows now) had
        written when the call began: its link is up and its replication offset has reached the
        master's ``master_repl_offset``.

        It waits as long as replication moves (the link's state, the sync's bytes or the offset
        change), however slow a busy machine makes it; it fails only when nothing moved for
        ``stall_seconds``, or at once when the server is a master (a failover promoted it), naming the log.
        """
        client = self.client()
        target: Optional[int] = None
        seen: Any = None
        stalled_since = time.monotonic()
        while True:
            info = cast(Dict[str, Any], client.info("replication"))
            if info["role"] == "master":
                raise SequenceConfigurationError(
                    f"redis-server on port {self.port} is a master, not a replica (a failover may have "
                    f"promoted it); see {self._dir / 'redis.log'}."
                )
            if target is None:
                with redis.Redis(host=info["master_host"], port=int(info["master_port"])) as master:
                    target = int(cast(Dict[str, Any], master.info("replication"))["master_repl_offset"])
            offset = int(info.get("slave_repl_offset", -1))
            if info.get("master_link_status") == "up" and offset >= target:
                return self
            state = (info.get("master_link_status"), offset, info.get("master_sync_read_bytes"))
            if state != seen:
                seen, stalled_since = state, time.monotonic()
            elif time.monotonic() - stalled_since > stall_seconds:
                raise SequenceConfigurationError(
                    f"redis-server on port {self.port} made no replication progress from its master "
                    f"(port {info['master_port']}) for {stall_seconds} s: link {state[0]}, offset {offset} "
                    f"of {target}; see {self._dir / 'redis.log'}."
                )
            time.sleep(0.02)

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

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The server stopped (SIGSTOP) for the block, as a hung Redis: connections stay open and
        nothing is answered until the block ends (SIGCONT). Unlike ``CLIENT PAUSE``, which ends at a
        time given in advance (and which ``CLIENT UNPAUSE`` cannot end early under ``PAUSE ALL``),
        the freeze ends exactly when the block does, however long a loaded machine takes."""
        if self._process is None or self._process.poll() is not None:
            raise SequenceConfigurationError(f"redis-server on port {self.port} is not running: nothing to freeze.")
        self._process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._process.send_signal(signal.SIGCONT)

    def close(self, keep_log: bool = False) -> None:
        """Stop it and delete its directory, or with ``keep_log`` keep it (for a failure's post-mortem)
        and say where it is."""
        self.stop()
        if keep_log:
            print(f"redis-server on port {self.port}: log kept in {self._dir / 'redis.log'}", file=sys.stderr)
        else:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close(keep_log=exc_type is not None)  # a failure inside the block keeps the log
