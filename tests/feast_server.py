"""Running `feast serve` in the tests: on a free port, ready when /health answers, stopped after."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import ContextManager, Dict, Iterator, List, Optional, Sequence

from feast_sequence.testing.local_redis import free_port

TESTS = Path(__file__).resolve().parent
FEAST = str(Path(sys.executable).parent / "feast")
FEAST_SEQUENCE = str(Path(sys.executable).parent / "feast-sequence")


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
    return _serving([FEAST, "-c", str(repo), "serve"], options, env)


def feast_sequence_serve(repo: Path, *options: str, env: Optional[Dict[str, str]] = None) -> ContextManager[int]:
    """`feast-sequence serve --repo repo` (Feast's server with the fast /push), as ``feast_serve``."""
    return _serving([FEAST_SEQUENCE, "serve", "--repo", str(repo)], options, env)


@contextlib.contextmanager
def _serving(command: List[str], options: Sequence[str], env: Optional[Dict[str, str]]) -> Iterator[int]:
    port = free_port()
    # Its log goes to a file, not a pipe: a pipe nobody reads would block the server once full.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port), "--no-access-log", *options],
            env=env if env is not None else dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        process.kill()
                        process.wait(30)
                        log.seek(0)
                        message = f"{command[0]} did not start: " + log.read().decode()[-3000:]
                        raise RuntimeError(message) from None
                    time.sleep(0.3)
            yield port
        finally:
            process.terminate()
            process.wait(30)


def module_repo(repo: Path, module: str, yaml: str) -> Dict[str, str]:
    """A repository whose features.py exposes ``tests/<module>.objects(data dir)``, applied with
    the `feast apply` CLI. Returns the environment that lets `feast` import the tests' modules."""
    (repo / "data").mkdir(parents=True, exist_ok=True)
    (repo / "features.py").write_text(
        "import sys\n"
        "from pathlib import Path\n\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        f"import {module}\n\n"
        f"for _object in {module}.objects(Path(__file__).resolve().parent / 'data'):\n"
        "    globals()[_object.name] = _object\n"
    )
    (repo / "feature_store.yaml").write_text(yaml)
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    applied = subprocess.run([FEAST, "-c", str(repo), "apply"], capture_output=True, text=True, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return env
