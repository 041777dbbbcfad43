"""What every benchmark command shares: the model and output flags, the tokenizer, its settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

RESULTS_ROOT = Path("benchmarks") / "results"


def parser_for(doc: str | None, name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{name}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model path (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_ROOT / name, help="folder for the JSON results and PNG plots"
    )
    return parser


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
