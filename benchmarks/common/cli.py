"""What every benchmark command shares: the model and output flags, presets, the tokenizer, its settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

RESULTS_ROOT = Path("benchmarks") / "results"
# Room the model's context needs beyond the prompt and the answer.
CONTEXT_MARGIN = 64


def parser_for(doc: str | None, module: str, name: str) -> argparse.ArgumentParser:
    """The parser of command `python -m <module>`, writing under benchmarks/results/<name>/ by default."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model path (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_ROOT / name, help="folder for the JSON results and PNG plots"
    )
    return parser


def apply_preset(args: argparse.Namespace, small: dict[str, Any], full: dict[str, Any]) -> None:
    """Every option left unset takes the preset's value."""
    for key, value in (full if args.full else small).items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def model_path(args: argparse.Namespace) -> str:
    if args.model:
        return args.model
    from asl_vllm.embedded_model import materialize

    return str(materialize())


def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The options that define a run's results (not whether it resumes), as JSON values."""
    return {
        key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items() if key != "resume"
    }
