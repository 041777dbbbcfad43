"""`python -m benchmarks.kernels.timing`: it runs without vLLM, and its cases drive the kernels they name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.kernels import timing

SMALL = ["--lengths", "48", "--heads", "4", "--kv-heads", "2", "--head-dim", "32", "--window", "8", "--keep", "16"]
SMALL += ["--obs-layers", "2", "--repeats", "1"]


def test_runs_where_vllm_is_not_installed():
    # `sys.modules["vllm"] = None` makes every import of vllm or a submodule fail.
    code = (
        "import runpy, sys; sys.modules['vllm'] = None; "
        f"sys.argv = ['kernels', *{SMALL!r}]; runpy.run_module('benchmarks.kernels.timing', run_name='__main__')"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("window hist (dense)", "window hist (cache)", "compaction (K and V)"):
        assert name in done.stdout


def test_the_triton_columns_in_the_interpreter(capsys):
    args = timing.build_parser().parse_args(SMALL)
    timing.measure(args, torch.device("cpu"), torch.float32, with_triton=True, peak=1e9)
    lines = capsys.readouterr().out.splitlines()
    assert "speed-up" in lines[0]
    timed = {line[:22].strip(): line.split() for line in lines[1:]}
    for name in ("window hist (dense)", "window hist (cache)", "compaction (K and V)", "pool + GQA sum"):
        assert timed[name][-1].endswith("x") and timed[name][-2].endswith("%")
