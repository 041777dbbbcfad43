"""A request's rows, positions and KV offset while the layer loop runs.

One step may mix prefills being pruned, decodes of requests pruned earlier and
ordinary requests. Every request of the step is a `LiveRequest`: the rows it
runs in each layer, their positions and slots, and the KV offset its attention
reads from. A ride-along request (a decode or an ordinary prefill) is only
that; a prefill to prune is a `PruningRequest` (`pruning_request.py`), which
adds its pruner, budget rule and decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from asl_vllm.device_upload import to_device
from asl_vllm.engine.attention_layout import RequestView
from asl_vllm.engine.prefill_plan import PrefillPlan


@dataclass(frozen=True)
class RequestStep:
    """One request's part of the step, in the runner's batch order."""

    req_id: str
    row_start: int
    num_rows: int
    seq_len: int
    # Set when this step is the request's whole prefill and it is to be pruned.
    plan: PrefillPlan | None = None
    # Set for a request pruned at an earlier prefill: first kept slot per KV cache group.
    group_offsets: Sequence[int] | None = None


class LiveRequest:
    """A request's rows (in the step's dense tensors), their positions and slots, and its KV offset."""

    def __init__(self, step: RequestStep, table_row: int, positions: torch.Tensor) -> None:
        self.step = step
        self.table_row = table_row
        self.rows = torch.arange(step.row_start, step.row_start + step.num_rows)
        self.slot_rows = self.rows
        self.positions = positions[to_device(self.rows, positions.device)]
        self.kv_offset = 0

    @property
    def count(self) -> int:
        return len(self.rows)

    def view(self, group: int) -> RequestView:
        offset = self.step.group_offsets[group] if self.step.group_offsets is not None else self.kv_offset
        return RequestView(num_rows=self.count, seq_len=self.step.seq_len, kv_offset=offset)
