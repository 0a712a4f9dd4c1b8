"""The docs run as written: every Python block of README.md and docs/*.md runs, in order, one
namespace per page, against the example repository (a copy of feature_repo/, applied, with its data)
or an empty working directory; marked shell blocks run too, and shown output is compared
(markers: tests/docs_snippets.py)."""

from __future__ import annotations

import ast
import contextlib
import doctest
import importlib.util
import io
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from docs_snippets import Block, blocks

from feast_server import feast_serve

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
#: Pages whose blocks read the example repository (`feature_repo/`, relative to the working directory).
ON_EXAMPLE_REPOSITORY = {"README.md", "docs/serving.md", "docs/validation.md"}
OUTPUT_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _missing(modules: str) -> List[str]:
    return [m for m in modules.split(",") if importlib.util.find_spec(m) is None]


def _imports_except(text: str, missing: List[str]) -> str:
    """The block's top-level import statements that do not import a ``missing`` module."""
    kept = []
    for node in ast.parse(text).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if not any(name.split(".")[0] in missing for name in names):
            kept.append(ast.unparse(node))
    return "\n".join(kept)


def _run_python(block: Block, text: str, namespace: Dict[str, Any]) -> str:
    """Run ``text`` (the block, or part of it) with tracebacks pointing at the page's lines."""
    # Compiled as the page itself, line for line, so tracebacks and inspect.getsource (which Feast's
    # on_demand_feature_view uses) read the page.
    code = compile("\n" * block.line + text, str(ROOT / block.page), "exec")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, namespace)
    return out.getvalue()


def _run_bash(block: Block, workdir: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-ec", block.text], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{block.where} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _check_excerpt(block: Block) -> None:
    def squeezed(text: str) -> str:
        return re.sub(r"\s+", " ", text).strip()

    source = (ROOT / block.argument).read_text()
    assert squeezed(block.text) in squeezed(source), f"{block.where} is not an excerpt of {block.argument}"


def run_page(page: str, workdir: Path, servers: contextlib.ExitStack) -> List[str]:
    """Run the page's blocks; return what was not run for lack of an optional dependency.

    ``<!-- docs: run with feast serve -->``: `feast -c feature_repo serve` is started (once per
    page, in ``servers``) and the block's ``localhost:6566`` is its address."""
    serve_port: Optional[int] = None
    namespace: Dict[str, Any] = {"__name__": "__docs__"}
    last_output: Optional[str] = None
    unmet: List[str] = []
    for block in blocks(ROOT / page, page):
        if block.action == "skip":
            continue
        if block.action == "excerpt":
            _check_excerpt(block)
        elif block.action == "file":
            target = workdir / block.argument
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
        elif block.action == "output":
            assert last_output is not None, f"{block.where}: an output block follows no Python block"
            checker = doctest.OutputChecker()
            assert checker.check_output(block.text, last_output, OUTPUT_FLAGS), (
                f"{block.where}: the block before printed\n{last_output}\nnot what the page shows:\n{block.text}"
            )
        elif block.language == "python":
            missing = _missing(block.argument.split()[0]) if block.action == "needs" else []
            if missing:
                unmet.append(f"{block.where} needs {', '.join(missing)}")
                _run_python(block, _imports_except(block.text, missing), namespace)
            else:
                last_output = _run_python(block, block.text, namespace)
        elif block.language == "bash" and block.action == "run":
            if block.argument == "with feast serve":
                if serve_port is None:
                    serve_port = servers.enter_context(feast_serve(workdir / "feature_repo"))
                block = replace(block, text=block.text.replace("localhost:6566", f"127.0.0.1:{serve_port}"))
            last_output = _run_bash(block, workdir)
    return unmet


@pytest.mark.parametrize("page", PAGES)
def test_the_page_runs_as_written(page, request, tmp_path, monkeypatch, capsys):
    redis_server = request.getfixturevalue("redis_server")
    request.getfixturevalue("redis_client")  # an empty Redis
    monkeypatch.setenv("FEAST_SEQUENCE_REDIS", redis_server.connection_string)
    workdir = request.getfixturevalue("retail_repo").parent if page in ON_EXAMPLE_REPOSITORY else tmp_path
    monkeypatch.chdir(workdir)
    with contextlib.ExitStack() as servers:
        unmet = run_page(page, workdir, servers)
    with capsys.disabled():
        for what in unmet:
            print(f"\n{what}: not run (its imports of other modules were)", end="")


def test_the_quickstart_activates_the_virtual_environment_before_its_first_feast_command():
    """Its commands are the ones `make` installs in .venv, not whatever `feast` is on PATH."""
    text = (ROOT / "docs/quickstart.md").read_text()
    assert text.index("source .venv/bin/activate") < text.index("feast -c shop apply")
