"""Which prompts make up a cell, the unit every score and interval is reported for.

A cell is one configuration on one prompt set: (config, length) for the needle grid,
(config, task) for the RULER-style tasks. The prompts of a cell spread evenly over the
other axes (haystack, depth; or length), so a cell's score is a mean over them, and
every configuration sees exactly the same prompts as full KV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Fewer prompts per cell give intervals too wide to support a claim.
MIN_PROMPTS_PER_CELL = 20


def spread(count: int, *axes: Sequence[Any]) -> list[tuple[Any, ...]]:
    """`count` points over the product of `axes`, the first axis varying fastest, then a replicate index.

    Every combination appears `count // product` or one more time.
    """
    if count < 1 or not all(axes):
        raise ValueError("need a positive count and non-empty axes")
    points = []
    for index in range(count):
        values, rest = [], index
        for axis in axes:
            values.append(axis[rest % len(axis)])
            rest //= len(axis)
        points.append((*values, rest))
    return points


@dataclass(frozen=True)
class NeedlePrompt:
    length: int
    haystack: str
    depth: float
    replicate: int

    @property
    def key(self) -> str:
        return f"{self.haystack}/{self.length}/{self.depth:g}/{self.replicate}"


@dataclass(frozen=True)
class TaskPrompt:
    task: str
    length: int
    index: int

    @property
    def key(self) -> str:
        return f"{self.task}/{self.length}/{self.index}"


def needle_prompts(
    lengths: Sequence[int], haystacks: Sequence[str], depths: Sequence[float], per_cell: int
) -> list[NeedlePrompt]:
    """Cell (config, length): `per_cell` prompts per length, haystacks and depths spread over them."""
    return [
        NeedlePrompt(length, haystack, depth, replicate)
        for length in lengths
        for haystack, depth, replicate in spread(per_cell, haystacks, depths)
    ]


def task_prompts(tasks: Sequence[str], lengths: Sequence[int], per_cell: int) -> list[TaskPrompt]:
    """Cell (config, task): `per_cell` prompts per task, lengths spread over them."""
    return [
        TaskPrompt(task, length, index) for task in tasks for index, (length, _) in enumerate(spread(per_cell, lengths))
    ]


def interleave(prompts: Sequence[Any], key: Any) -> list[Any]:
    """Prompts reordered round-robin over `key(prompt)` groups, so that a run stopped early
    has covered every group (every length, every task) about equally."""
    groups: dict[Any, list[Any]] = {}
    for prompt in prompts:
        groups.setdefault(key(prompt), []).append(prompt)
    ordered = []
    for rank in range(max((len(group) for group in groups.values()), default=0)):
        ordered += [group[rank] for group in groups.values() if rank < len(group)]
    return ordered


def cell_note(per_cell: int) -> str:
    """What the output says about its cells' size."""
    if per_cell >= MIN_PROMPTS_PER_CELL:
        return f"{per_cell} prompts per cell"
    return f"{per_cell} prompts per cell (below {MIN_PROMPTS_PER_CELL}: intervals too wide for claims)"
