"""Run the benchmarks and write the README's results section (between its markers).

Runs `benchmarks.accuracy.niah`, `benchmarks.accuracy.ruler` and `benchmarks.serving.performance`
at their small size, or at full size with --full (each is also a command of its own), printing the plan's
estimated time first, then replaces the part of README.md between the results markers
with their tables, plots, targets, the exact command and the machine. Every benchmark
rewrites its JSON after each result, so a stopped run still leaves tables:
`--no-run` rewrites the section from the JSON already in --out (complete or not), and
`--resume` continues a stopped run. Unknown flags go to every benchmark
(e.g. `--budget-heads default`). A results file measured before a default it depends on
changed (common/defaults.py) is marked STALE above its tables, with why: it needs a re-run.

The full run takes hours on a 2-core CPU; run it in the background (logs are not committed):
    mkdir -p docs/benchmark-results/full
    nohup python -m benchmarks.report --full > docs/benchmark-results/full/report.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.accuracy import niah, ruler
from benchmarks.common.defaults import stale_reasons
from benchmarks.common.machine import one_line
from benchmarks.common.time_estimate import describe
from benchmarks.serving import performance

# Committed beside the README, so the section's plots show wherever the README is read.
REPORT_ROOT = Path("docs") / "benchmark-results"
START = "<!-- benchmark-results:start -->"
END = "<!-- benchmark-results:end -->"
BENCHMARKS: dict[str, ModuleType] = {"niah": niah, "ruler": ruler, "serving": performance}
TITLES = {
    "niah": "Needle in a haystack",
    "ruler": "RULER-style synthetic tasks",
    "serving": "Serving: latency, KV held, capacity (OpenAI server)",
}


def replace_section(readme: str, section: str) -> str:
    """The README with `section` between the markers (appended, with markers, when absent)."""
    block = f"{START}\n{section.strip()}\n{END}"
    if START in readme and END in readme:
        head, rest = readme.split(START, 1)
        return head + block + rest.split(END, 1)[1]
    return readme.rstrip() + "\n\n" + block + "\n"


def progress(document: dict[str, Any]) -> str:
    """How far a benchmark got: its wall time, and what is missing if it stopped early."""
    wall = describe(document["wall_seconds"])
    estimated = describe(document["plan"]["estimated_seconds"])
    if document["complete"]:
        return f"{wall}, estimated {estimated}"
    plan, records = document["plan"], document["records"]
    if plan.get("requests"):
        runnable = len(plan["configs"]) - len(document["unavailable"])
        count = f"{len(records)} of {plan['requests'] * runnable // len(plan['configs'])} results"
    else:
        count = f"{len(records)} results"
    return f"PARTIAL: stopped after {count}, {wall} (estimated {estimated} for all)"


def render(documents: dict[str, dict[str, Any]], command: str, readme_dir: Path) -> str:
    """Markdown for the results section from the benchmarks' JSON documents."""
    first = next(iter(documents.values()))
    model = first["settings"].get("model") or "SmolLM2-135M-Instruct (embedded)"
    lines = [
        "### Results",
        "",
        f"Produced by `{command}` on {one_line(first['machine'])}; model {model}. "
        "Every score carries its 95% Wilson interval; a difference is claimed only where the intervals "
        "do not overlap.",
    ]
    for name, document in documents.items():
        folder = Path(document["settings"]["out"])
        link = Path(os.path.relpath(folder.resolve(), readme_dir)).as_posix()
        command = f"python -m {BENCHMARKS[name].__name__}" + (" --full" if document["settings"].get("full") else "")
        lines += ["", f"#### {TITLES[name]}", ""]
        if stale := stale_reasons(document):
            lines += [f"**STALE** `{command}`: {'; '.join(stale)}. These results are not the current defaults'.", ""]
        commit = f" at commit {document['commit'][:7]}" if document.get("commit") else ""
        lines += [f"`{command}`{commit}: {progress(document)}.", ""]
        lines.append(BENCHMARKS[name].render(document, link))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="every benchmark at full size")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--out", type=Path, default=None, help=f"results root (default: {REPORT_ROOT}/small or /full)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--plan", action="store_true", help="only print the plan's estimated time")
    parser.add_argument("--no-run", action="store_true", help="only rewrite the README from the JSON in --out")
    parser.add_argument("--resume", action="store_true", help="continue a stopped run from the JSON in --out")
    parser.add_argument("--model", default=None, help="model path (default: the embedded model)")
    args, passthrough = parser.parse_known_args(argv)
    root = args.out or REPORT_ROOT / ("full" if args.full else "small")
    shared = (["--full"] if args.full else []) + (["--model", args.model] if args.model else []) + passthrough

    began = time.perf_counter()
    if not args.no_run:
        estimates = {name: BENCHMARKS[name].estimated_seconds(shared) for name in args.only}
        plan = ", ".join(f"{name} {describe(seconds)}" for name, seconds in estimates.items())
        print(f"report: estimated {describe(sum(estimates.values()))} on the reference 2-core CPU ({plan})")
        if args.plan:
            return
    documents = {}
    for name in args.only:
        forwarded = ["--out", str(root / name), *shared, *(["--resume"] if args.resume else [])]
        if not args.no_run:
            print(f"== python -m {BENCHMARKS[name].__name__} {shlex.join(forwarded)}")
            BENCHMARKS[name].main(forwarded)
        path = root / name / f"{name}.json"
        if path.exists():
            documents[name] = json.loads(path.read_text())
            if args.no_run:
                # A stopped run drew no plots: draw them from what its JSON holds, so the section's links resolve.
                BENCHMARKS[name].plot(documents[name], root / name)
    if not documents:
        parser.error(f"no results under {root}")
    command = shlex.join(["python", "-m", "benchmarks.report", *(["--full"] if args.full else []), *passthrough])
    section = render(documents, command, args.readme.resolve().parent)
    args.readme.write_text(replace_section(args.readme.read_text(), section))
    print(f"wrote the results section of {args.readme} ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
