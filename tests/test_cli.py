"""`vllm serve` itself: the flags show in its help, and bad values stop it with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

VLLM = str(Path(sys.executable).with_name("vllm"))


def _vllm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VLLM, *args], capture_output=True, text=True, timeout=300)


def test_vllm_command_starts_and_reports_its_version():
    result = _vllm("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("0.32.0")


def test_serve_help_lists_the_pruner_flags():
    result = _vllm("serve", "--help=KVPruning")
    assert result.returncode == 0, result.stderr
    for flag in (
        "--kv-pruner",
        "--kv-budget",
        "--asl-select-k",
        "--asl-tau",
        "--asl-min-layer",
        "--asl-obs-layers",
        "--asl-window",
        "--asl-kernel",
        "--fixed-layer",
        "--asl-two-pass",
        "--kv-layer-groups",
    ):
        assert flag in result.stdout
    assert "{none,asl,fastkv,gemfilter,snapkv}" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kv-pruner", "asl", "--asl-tau", "0"], "argument --asl-tau: must be in (0, 1], got 0"),
        (["--kv-pruner", "h2o"], "argument --kv-pruner: invalid choice: 'h2o'"),
        (["--kv-pruner", "asl", "--asl-window", "64", "--asl-select-k", "32"], "error: --asl-window:"),
        (
            ["--kv-pruner", "fastkv", "--fixed-layer", "40"],
            "error: --fixed-layer: 40 is out of range for a 30-layer model",
        ),
        (["--kv-pruner", "asl", "--enable-prefix-caching"], "error: --enable-prefix-caching: cannot be used with"),
        (["--kv-budget", "512"], "error: --kv-budget: has no effect without --kv-pruner"),
        (
            ["--kv-pruner", "asl", "--kv-layer-groups", "4"],
            "error: --kv-layer-groups: 4 does not divide the model's 30 layers",
        ),
        (
            ["--kv-pruner", "asl", "--disable-hybrid-kv-cache-manager"],
            "error: --disable-hybrid-kv-cache-manager: cannot be used with more than one --kv-layer-groups",
        ),
    ],
)
def test_bad_flags_stop_before_any_engine_starts(model_path, args, message):
    result = _vllm("serve", model_path, *args)
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1, result.stderr[-2000:]
    assert message in error_lines[0]
    assert "Starting vLLM" not in result.stderr and "EngineCore" not in result.stderr
