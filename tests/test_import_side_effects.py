"""Importing feast_sequence (and its command-line modules) changes nothing in the process beyond what
importing Feast itself does: no environment variables, no metrics registered, no files."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import os, sys, tempfile
import feast
before_env, before_tmp = dict(os.environ), set(os.listdir(tempfile.gettempdir()))
import feast_sequence
import feast_sequence.cli
from prometheus_client import REGISTRY
ours = sorted(m.name for m in REGISTRY.collect() if m.name.startswith("feast_sequence"))
print(dict(os.environ) == before_env, set(os.listdir(tempfile.gettempdir())) == before_tmp, ours)
"""


def test_importing_feast_sequence_has_no_side_effects(tmp_path):
    # A temp dir of its own: other tests running at the same time write to the shared one.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.split("\n")[-2] == "True True []", result.stdout + result.stderr


def test_the_serving_metrics_are_made_on_first_use():
    from feast_sequence.serving import metrics

    assert metrics.STAGE_SECONDS is metrics.STAGE_SECONDS
    assert metrics.STAGE_SECONDS._name == "feast_sequence_stage_seconds"
