"""A benchmark's JSON document, rewritten after every result so that a stopped run leaves usable tables.

The document holds the settings, the machine, the plan with its time estimate, the
configurations an engine could not run (with the reason) and one record per finished
measurement. It is replaced atomically (write, then rename), so a reader never sees half a
file. With `resume`, a run that finds a document of the same benchmark and settings
keeps its records and skips what they cover.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.common.machine import describe


class ResultsFile:
    def __init__(
        self, path: Path, benchmark: str, settings: dict[str, Any], plan: dict[str, Any], resume: bool
    ) -> None:
        self.path = path
        self.began = time.perf_counter()
        previous = self._previous(benchmark, settings) if resume else None
        self.document: dict[str, Any] = {
            "benchmark": benchmark,
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

    def _previous(self, benchmark: str, settings: dict[str, Any]) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        document = json.loads(self.path.read_text())
        same = document.get("benchmark") == benchmark and document.get("settings") == settings
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
