"""What every benchmark command shares: the model and output flags, and writing results."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import describe

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


def write_results(out: Path, name: str, settings: dict[str, Any], results: dict[str, Any], began: float) -> Path:
    """`<out>/<name>.json`: the settings, the machine, the wall time and the results."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    document = {
        "benchmark": name,
        "settings": settings,
        "machine": describe(),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "results": results,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    return {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
