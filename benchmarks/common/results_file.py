"""A benchmark's JSON document, rewritten after every result so that a stopped run leaves usable tables.

The document holds the commit of the checkout that ran it (with its date and whether the work
tree had changes), the settings, the machine, the plan with its time estimate, the
configurations an engine could not run (with the reason) and one record per finished
measurement (per repeat, raw), so every figure drawn from it can be recomputed and a figure
measured before a default changed can be told apart (common/defaults.py). It is replaced
atomically (write, then rename), so a reader never sees half a file. With `resume`, a run
that finds a document of the same benchmark, settings and commit keeps its records and
skips what they cover.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common.machine import describe

CHECKOUT = Path(__file__).resolve().parents[2]


def checkout() -> dict[str, Any]:
    """The checkout's commit, its committer date (ISO) and whether tracked files differ from it; None
    for each where git cannot tell (not a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "commit_date": git("log", "-1", "--format=%cI", "HEAD"),
        "dirty": None if status is None else bool(status),
    }


class ResultsFile:
    def __init__(
        self, path: Path, benchmark: str, settings: dict[str, Any], plan: dict[str, Any], resume: bool
    ) -> None:
        self.path = path
        self.began = time.perf_counter()
        here = checkout()
        previous = self._previous(benchmark, settings, here["commit"]) if resume else None
        self.document: dict[str, Any] = {
            "benchmark": benchmark,
            **here,
            "settings": settings,
            "machine": describe(),
            "plan": plan,
            "complete": False,
            "wall_seconds": previous["wall_seconds"] if previous else 0.0,
            "unavailable": {},
            "records": previous["records"] if previous else [],
        }
        self._base_seconds = self.document["wall_seconds"]
        self.save()

    def _previous(self, benchmark: str, settings: dict[str, Any], commit: str | None) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        document = json.loads(self.path.read_text())
        same = (
            document.get("benchmark") == benchmark
            and document.get("settings") == settings
            and document.get("commit") == commit
        )
        return document if same else None

    def done(self) -> set[tuple[str, str]]:
        """(config, key) of every record kept so far."""
        return {(record["config"], record["key"]) for record in self.document["records"]}

    def add(self, record: dict[str, Any]) -> None:
        self.document["records"].append(record)
        self.save()

    def unavailable(self, config: str, reason: str) -> None:
        self.document["unavailable"][config] = reason
        self.save()

    def finish(self) -> dict[str, Any]:
        self.document["complete"] = True
        self.save()
        return self.document

    def save(self) -> None:
        self.document["wall_seconds"] = round(self._base_seconds + time.perf_counter() - self.began, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.document, indent=1, default=str) + "\n")
        os.replace(partial, self.path)


def by_config(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records per config, configs in first-seen order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(record["config"], []).append(record)
    return grouped


def unavailable_lines(document: dict[str, Any]) -> list[str]:
    """Markdown lines naming the configs an engine could not run, and why (none when all ran)."""
    missing = document["unavailable"]
    return ["", "Not available: " + "; ".join(f"{c}: {why}" for c, why in missing.items())] if missing else []
