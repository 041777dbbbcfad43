"""PNG plots of benchmark results (matplotlib, headless)."""

from __future__ import annotations

import math
from collections import Counter
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
    """Scores (0..100) at depths (rows) x context lengths (columns); None where nothing was measured."""

    title: str
    lengths: Sequence[int]
    depths: Sequence[float]
    scores: Sequence[Sequence[float | None]]


def heatmaps(path: Path, title: str, panels: Sequence[Heatmap]) -> Path:
    """Needle-in-a-haystack figures as in the paper: red = missed, green = found."""
    plt = _pyplot()
    columns = min(len(panels), 2)
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.8 * rows), squeeze=False)
    image = None
    for axis, panel in zip(axes.flat, panels, strict=False):
        grid = [[math.nan if score is None else score for score in line] for line in panel.scores]
        image = axis.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
        axis.set_title(panel.title, fontsize=10)
        axis.set_xticks(range(len(panel.lengths)), [str(length) for length in panel.lengths])
        axis.set_yticks(range(len(panel.depths)), [f"{depth:.0%}" for depth in panel.depths])
        axis.set_xlabel("context length (tokens)")
        axis.set_ylabel("needle depth")
        for row, line in enumerate(panel.scores):
            for column, score in enumerate(line):
                label = "-" if score is None else f"{score:.0f}"
                axis.text(column, row, label, ha="center", va="center", fontsize=8)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    if image is not None:
        figure.colorbar(image, ax=axes, label="score (%)", shrink=0.8)
    figure.suptitle(title)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def grouped_bars(
    path: Path,
    title: str,
    categories: Sequence[str],
    series: dict[str, Sequence[float | None]],
    ylabel: str,
    intervals: dict[str, Sequence[tuple[float, float] | None]] | None = None,
) -> Path:
    """One group of bars per category, one bar per series (a missing value leaves a gap);
    `intervals` (low, high) per value are drawn as error bars."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(6.0, 0.9 * len(categories) * max(len(series), 1) / 2), 4))
    width = 0.8 / max(len(series), 1)
    for offset, (name, values) in enumerate(series.items()):
        shown = [i for i, value in enumerate(values) if value is not None]
        heights = [values[i] for i in shown]
        errors = None
        if intervals is not None:
            bounds = [intervals[name][i] or (values[i], values[i]) for i in shown]
            errors = [
                [h - low for h, (low, _) in zip(heights, bounds, strict=True)],
                [high - h for h, (_, high) in zip(heights, bounds, strict=True)],
            ]
        axis.bar([i + offset * width for i in shown], heights, width, label=name, yerr=errors, capsize=2)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(categories))], categories, rotation=30, ha="right")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def selection_histograms(path: Path, title: str, histograms: dict[tuple[int, str], Counter]) -> Path:
    """Selection-layer counts, one panel per tau, one bar series per prompt length ('none' last)."""
    plt = _pyplot()
    taus = sorted({tau for _, tau in histograms})
    figure, axes = plt.subplots(1, max(len(taus), 1), figsize=(6 * max(len(taus), 1), 3.6), squeeze=False)
    for axis, tau in zip(axes.flat, taus, strict=False):
        lengths = sorted(length for length, other in histograms if other == tau)
        layers = sorted(
            {layer for (_, other), counts in histograms.items() if other == tau for layer in counts if layer != "none"}
        )
        labels = [*map(str, layers), "none"]
        width = 0.8 / len(lengths)
        for offset, length in enumerate(lengths):
            counts = histograms[(length, tau)]
            heights = [counts.get(layer, 0) for layer in [*layers, "none"]]
            axis.bar([i + offset * width for i in range(len(labels))], heights, width, label=f"{length} tokens")
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels)
        axis.set_xlabel("selection layer (none: no layer passed tau)")
        axis.set_ylabel("prompts")
        axis.set_title(f"tau {tau}")
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path
