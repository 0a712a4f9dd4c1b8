"""Running `feast serve` in the tests: on a free port, ready when /health answers, stopped after."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence

from feast_sequence.testing.local_redis import free_port

from repos import FEAST, feast_apply, wait_until, write_repo

TESTS = Path(__file__).resolve().parent
FEAST_SEQUENCE = str(Path(FEAST).parent / "feast-sequence")


def post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return json.loads(text) if text else {}


def feast_serve(repo: Path, *options: str, env: Optional[Dict[str, str]] = None) -> ContextManager[int]:
    """`feast -c repo serve` with ``options``; yields its port once /health answers."""
    return _serving(_http([FEAST, "-c", str(repo), "serve"], options), _answers, env)


def feast_serve_registry(repo: Path, env: Optional[Dict[str, str]] = None) -> ContextManager[int]:
    """`feast -c repo serve_registry` (Feast's gRPC registry server); yields its port once it accepts
    connections."""
    return _serving(lambda port: [FEAST, "-c", str(repo), "serve_registry", "-p", str(port)], _accepts, env)


def feast_sequence_serve(
    repo: Path, *options: str, env: Optional[Dict[str, str]] = None, log: Optional[Path] = None
) -> ContextManager[int]:
    """`feast-sequence serve --repo repo` (Feast's server with the fast /push), as ``feast_serve``;
    its stderr goes to ``log`` if given."""
    return _serving(_http([FEAST_SEQUENCE, "serve", "--repo", str(repo)], options), _answers, env, log)


def _http(command: List[str], options: Sequence[str]) -> Callable[[int], List[str]]:
    """A feature server's command line on a port (loopback, no access log)."""
    return lambda port: [*command, "--host", "127.0.0.1", "-p", str(port), "--no-access-log", *options]


@contextlib.contextmanager
def _serving(
    command_on: Callable[[int], List[str]],
    ready: Callable[[int], bool],
    env: Optional[Dict[str, str]],
    log_path: Optional[Path] = None,
) -> Iterator[int]:
    """Run ``command_on(a free port)`` until the block ends; yield the port once ``ready(port)``."""
    port = free_port()
    command = command_on(port)
    # Its log goes to a file, not a pipe: a pipe nobody reads would block the server once full.
    with open(log_path, "w+b") if log_path else tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            env=env if env is not None else dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            try:
                wait_until(lambda: ready(port), 180, f"{' '.join(command[:4])} to be ready", 0.3, process)
            except AssertionError as failed:
                process.kill()
                process.wait(30)
                log.seek(0)
                message = f"{command[0]} did not start ({failed}): " + log.read().decode()[-3000:]
                raise RuntimeError(message) from None
            yield port
        finally:
            process.terminate()
            process.wait(30)


def _answers(port: int) -> bool:
    """Whether the server on ``port`` answers /health."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
        return True
    except OSError:
        return False


def _accepts(port: int) -> bool:
    """Whether something on ``port`` accepts TCP connections (a gRPC server)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def module_repo(repo: Path, module: str, project: str, online: Dict[str, Any], **config: Any) -> Dict[str, str]:
    """A repository whose features.py exposes ``tests/<module>.objects(data dir)`` (``config``: more
    ``write_repo`` arguments), applied with the `feast apply` CLI. Returns the environment that lets
    `feast` import the tests' modules."""
    write_repo(repo, project, online, **config)
    (repo / "features.py").write_text(
        "import sys\n"
        "from pathlib import Path\n\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        f"import {module}\n\n"
        f"for _object in {module}.objects(Path(__file__).resolve().parent / 'data'):\n"
        "    globals()[_object.name] = _object\n"
    )
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    feast_apply(repo, env)
    return env
