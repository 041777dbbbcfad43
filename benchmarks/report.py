"""Run every benchmark at its small default and write the README's results section.

Runs `benchmarks.niah`, `benchmarks.ruler` and `benchmarks.serving` (each also a command of
its own, with flags for the full size), then replaces the part of README.md between the
results markers with their tables, plots and targets, and the machine they ran on.
Re-running replaces the section. `--no-run` rewrites the section from the JSON files
already in --out (e.g. after running the benchmarks at full size by hand). Unknown flags
go to every benchmark (e.g. `--pruners none asl --budget 1024`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from benchmarks import niah, ruler, serving
from benchmarks.machine import one_line

# Committed beside the README, so the section's plots show wherever the README is read.
REPORT_ROOT = Path("docs") / "benchmark-results"
START = "<!-- benchmark-results:start -->"
END = "<!-- benchmark-results:end -->"
BENCHMARKS = {"niah": niah, "ruler": ruler, "serving": serving}


def replace_section(readme: str, section: str) -> str:
    """The README with `section` between the markers (appended, with markers, when absent)."""
    block = f"{START}\n{section.strip()}\n{END}"
    if START in readme and END in readme:
        head, rest = readme.split(START, 1)
        return head + block + rest.split(END, 1)[1]
    return readme.rstrip() + "\n\n" + block + "\n"


def render(documents: dict[str, dict[str, Any]], readme_dir: Path) -> str:
    """Markdown for the results section from the benchmarks' JSON documents."""
    first = next(iter(documents.values()))
    lines = [
        "### Results",
        "",
        f"Produced by `python -m benchmarks.report` on {one_line(first['machine'])}, model "
        f"{first['settings'].get('model') or 'SmolLM2-135M-Instruct (embedded)'}; "
        "each benchmark's settings are given with its table, and its `--help` gives the flags for the full size.",
    ]
    for name, document in documents.items():
        settings, results = document["settings"], document["results"]
        folder = Path(settings["out"])
        link = Path(os.path.relpath(folder.resolve(), readme_dir)).as_posix()
        budget = settings.get("budget") or "none"
        lines += ["", f"#### {TITLES[name]}", "", f"Budget {budget}, select-k {settings.get('select_k')}; "
                  f"{document['wall_seconds']:.0f} s. `python -m benchmarks.{name}`", ""]
        if name == "niah":
            lines.append(niah.table(results, settings["haystacks"], settings["needles"]))
            lines.append("")
            lines += [f"![{pruner}]({link}/{result['plot']})" for pruner, result in results.items() if result["available"]]
        elif name == "ruler":
            lines += [ruler.table(results), "", ruler.targets(results), "", f"![ruler]({link}/ruler.png)"]
        else:
            lines += [serving.table(results), "", serving.targets(results, settings["capacity_length"])]
            if (folder / "serving.png").exists():
                lines += ["", f"![serving]({link}/serving.png)"]
        missing = [f"{p}: {r['reason']}" for p, r in results.items() if not r["available"]]
        if missing and name != "ruler":
            lines += ["", "Not available: " + "; ".join(missing)]
    return "\n".join(lines)


TITLES = {
    "niah": "Needle in a haystack",
    "ruler": "RULER-style synthetic tasks",
    "serving": "Serving: latency, KV held, capacity (OpenAI server)",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--out", type=Path, default=REPORT_ROOT, help="results root (one folder per benchmark)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--no-run", action="store_true", help="only rewrite the README from the JSON in --out")
    parser.add_argument("--model", default=None, help="model path (default: the embedded model)")
    args, passthrough = parser.parse_known_args(argv)

    began = time.perf_counter()
    documents = {}
    for name in args.only:
        folder = args.out / name
        if not args.no_run:
            forwarded = ["--out", str(folder), *passthrough] + (["--model", args.model] if args.model else [])
            print(f"== benchmarks.{name} {' '.join(forwarded)}")
            BENCHMARKS[name].main(forwarded)
        documents[name] = json.loads((folder / f"{name}.json").read_text())
    readme_dir = args.readme.resolve().parent
    section = render(documents, readme_dir)
    args.readme.write_text(replace_section(args.readme.read_text(), section))
    print(f"wrote the results section of {args.readme} ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
