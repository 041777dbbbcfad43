"""PNG plots of benchmark results (matplotlib, headless)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Heatmap:
    """Scores (0..100) at depths (rows) x context lengths (columns)."""

    title: str
    lengths: Sequence[int]
    depths: Sequence[float]
    scores: Sequence[Sequence[float]]


def heatmaps(path: Path, title: str, panels: Sequence[Heatmap]) -> Path:
    """Needle-in-a-haystack figures as in the paper: red = missed, green = found."""
    plt = _pyplot()
    columns = min(len(panels), 2)
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.8 * rows), squeeze=False)
    image = None
    for axis, panel in zip(axes.flat, panels, strict=False):
        image = axis.imshow(panel.scores, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
        axis.set_title(panel.title, fontsize=10)
        axis.set_xticks(range(len(panel.lengths)), [str(length) for length in panel.lengths])
        axis.set_yticks(range(len(panel.depths)), [f"{depth:.0%}" for depth in panel.depths])
        axis.set_xlabel("context length (tokens)")
        axis.set_ylabel("needle depth")
        for row, line in enumerate(panel.scores):
            for column, score in enumerate(line):
                axis.text(column, row, f"{score:.0f}", ha="center", va="center", fontsize=8)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    if image is not None:
        figure.colorbar(image, ax=axes, label="score (%)", shrink=0.8)
    figure.suptitle(title)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def grouped_bars(
    path: Path, title: str, categories: Sequence[str], series: dict[str, Sequence[float | None]], ylabel: str
) -> Path:
    """One group of bars per category, one bar per series (a missing value leaves a gap)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(6.0, 0.9 * len(categories) * max(len(series), 1) / 2), 4))
    width = 0.8 / max(len(series), 1)
    for offset, (name, values) in enumerate(series.items()):
        positions = [i + offset * width for i, value in enumerate(values) if value is not None]
        axis.bar(positions, [value for value in values if value is not None], width, label=name)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(categories))], categories, rotation=30, ha="right")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path
