"""Every benchmark command starts under its module path and prints its flags (`python -m ... --help`)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [
    "benchmarks.accuracy.niah",
    "benchmarks.accuracy.ruler",
    "benchmarks.serving.performance",
    "benchmarks.serving.pressure",
    "benchmarks.engine.performance",
    "benchmarks.engine.step_overhead",
    "benchmarks.kernels.timing",
    "benchmarks.report",
]


@pytest.mark.parametrize("module", COMMANDS)
def test_help(module):
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {module} ")
