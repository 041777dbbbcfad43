"""How a step's pruning decisions reach the scheduler: on that step's `ModelRunnerOutput`, as a declared field.

vLLM 0.32 hands the scheduler one `ModelRunnerOutput` per step, the one of the
output rank (TP rank 0 of the last pipeline stage: `MultiprocExecutor`'s
`_get_output_rank` and `unique_reply_rank`); the other ranks' outputs are never
sent. Between processes the object is pickled whole: by the shared-memory
`MessageQueue` of the multiprocessing executor (`shm_broadcast.py`, the only
executor the CPU build runs tensor parallelism with), by Ray, or not at all
with the uniprocess executor. msgpack serializes only what the engine core
sends on to the frontend, where the report rides on `kv_transfer_params`.
A subclass with a declared field keeps the decisions part of the object's type
through pickling and copying. Every TP rank makes the same decisions; the
output rank's reach the scheduler, so each decision arrives once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vllm.v1.outputs import ModelRunnerOutput

from asl_vllm.engine.decisions import PruneDecision


@dataclass
class PruningModelRunnerOutput(ModelRunnerOutput):
    kv_pruner_decisions: list[PruneDecision] = field(default_factory=list)


def with_decisions(output: ModelRunnerOutput, decisions: list[PruneDecision]) -> PruningModelRunnerOutput:
    """A copy of `output` carrying `decisions` (never written into vLLM's shared empty output)."""
    if not isinstance(output, ModelRunnerOutput):
        raise TypeError(f"pruning decisions need a ModelRunnerOutput to ride on, got {type(output).__name__}")
    values = {item.name: getattr(output, item.name) for item in dataclasses.fields(ModelRunnerOutput)}
    return PruningModelRunnerOutput(**values, kv_pruner_decisions=decisions)


def step_decisions(output: object) -> list[PruneDecision]:
    """The decisions a step's output carries (none for a step that pruned nothing)."""
    return output.kv_pruner_decisions if isinstance(output, PruningModelRunnerOutput) else []
