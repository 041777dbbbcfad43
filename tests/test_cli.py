"""`vllm serve` itself: the flags show in its help, and bad values stop it with one line."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from asl_vllm.config import PrunerConfigError

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
        "--kv-budget-heads",
        "--kv-budget-layers",
        "--kv-budget-min",
        "--kv-budget-auto-low",
        "--kv-budget-auto-high",
    ):
        assert flag in result.stdout
    assert "{none,asl,fastkv,gemfilter,snapkv,pyramidkv}" in result.stdout


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
        (["--kv-pruner", "asl", "--asl-select-k", str(10**26)], "error: --asl-select-k: must be <= 2147483647"),
        (
            ["--kv-pruner", "asl", "--kv-layer-groups", "4"],
            "error: --kv-layer-groups: 4 does not divide the model's 30 layers",
        ),
        (
            ["--kv-pruner", "asl", "--disable-hybrid-kv-cache-manager"],
            "error: --disable-hybrid-kv-cache-manager: cannot be used with more than one --kv-layer-groups",
        ),
        (
            ["--kv-pruner", "asl", "--kv-transfer-config", '{"kv_connector":"ExampleConnector","kv_role":"kv_both"}'],
            "error: --kv-transfer-config: its KV connector does not support vLLM's hybrid allocator",
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


def _serve_parse_error(model_path: str, args: list[str]) -> tuple[int, str]:
    """Run `vllm serve`'s own parsing and validation in this process, up to the engine config.

    Returns (exit code, stderr + message) of the SystemExit that argparse raises for a malformed value,
    or of the PrunerConfigError that the `vllm serve` command turns into its one-line exit.
    """
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm")
    command = ServeSubcommand()
    command.subparser_init(parser.add_subparsers(dest="subparser"))
    stderr = io.StringIO()
    with pytest.raises((SystemExit, PrunerConfigError)) as stop, contextlib.redirect_stderr(stderr):
        namespace = parser.parse_args(["serve", model_path, *args])
        namespace.model = namespace.model_tag
        command.validate(namespace)
        AsyncEngineArgs.from_cli_args(namespace)
    if isinstance(stop.value, PrunerConfigError):
        return 1, f"error: {stop.value}"
    # argparse prints its usage and error and exits 2.
    return stop.value.code, stderr.getvalue()


BAD_INTEGERS = ["", " ", "abc", "nan", "inf", "1e400", "1.5", "1e3", "0x10", "None", "null", "[1]", "{}", "true", "-1"]
BAD_NUMBERS = ["", "abc", "nan", "NaN", "inf", "1e400", "0", "-0", "-1", "1.0000001", "2", "None", "[0.3]", "{}"]
HUGE = str(10**26)


@pytest.mark.parametrize(
    ("option", "values"),
    [
        ("--kv-budget", [*BAD_INTEGERS, "0", "31", HUGE, "AUTO", "auto1"]),
        ("--kv-budget-min", [*BAD_INTEGERS, "0", "31", HUGE, "auto"]),
        ("--kv-budget-auto-low", ["", "abc", "nan", "-1", "1.1", "inf"]),
        ("--kv-budget-auto-high", ["", "abc", "nan", "-1", "1.1", "inf"]),
        ("--asl-select-k", [*BAD_INTEGERS, "0", "31", HUGE]),
        ("--asl-window", [*BAD_INTEGERS, "0", "4096", HUGE]),
        ("--asl-kernel", [*BAD_INTEGERS, "0", "4", "1025", HUGE]),
        ("--asl-min-layer", [*BAD_INTEGERS, "0", "6", "28", HUGE]),
        ("--asl-obs-layers", [*BAD_INTEGERS, "0", "1", "29", HUGE]),
        ("--fixed-layer", [*BAD_INTEGERS, "29", HUGE]),
        ("--asl-tau", BAD_NUMBERS),
        ("--kv-layer-groups", [*BAD_INTEGERS, "0", "4", "31", HUGE]),
        ("--kv-pruner", ["", " ", "h2o", "ASL", "nan", "0", "null", "{}"]),
        ("--kv-budget-heads", ["", " ", "both", "SHARED", "per_kv_head", "null", "1"]),
        ("--kv-budget-layers", ["", "all", "Shared", "per_layer", "none", "1"]),
    ],
)
def test_fuzzed_flag_values_stop_serve_with_one_line_naming_the_flag(model_path, option, values):
    pruner = "fastkv" if option == "--fixed-layer" else "asl"
    for value in values:
        args = [option, value] if option == "--kv-pruner" else ["--kv-pruner", pruner, option, value]
        code, text = _serve_parse_error(model_path, args)
        error_lines = [line for line in text.splitlines() if "error" in line]
        assert code != 0, (option, value)
        assert len(error_lines) == 1, (option, value, text)
        assert option in error_lines[0], (option, value, text)
