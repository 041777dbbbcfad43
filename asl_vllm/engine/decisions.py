"""What the pruner did to one request: made by the worker, completed and logged once by the scheduler.

Its `report()` travels to the API server on the request's `EngineCoreOutput.kv_transfer_params`
under `asl_vllm.report_key.REPORT_KEY`: the client reads it in the response and the server's metrics count it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asl_vllm.log import logger


@dataclass
class PruneDecision:
    req_id: str
    pruner: str
    num_prompt_tokens: int
    # asl with --asl-two-pass (gemfilter always re-runs).
    two_pass: bool = False
    # Selection layer (GemFilter's filter layer).
    selection_layer: int | None = None
    selected_tokens: int | None = None
    # Prompt indices of the selected tokens (ascending), when the selection pruned any.
    selected_indices: torch.Tensor | None = None
    # Per layer: first kept slot D (0 = full KV). Decode attention reads [D, seq_len).
    layer_offsets: list[int] = field(default_factory=list)
    # KV cache group of each layer (one group per bucket of consecutive layers).
    layer_groups: list[int] = field(default_factory=list)
    # Set by a re-run (two-pass): RoPE position = slot - position_offset, so kept and decoded
    # tokens are numbered contiguously from 0.
    position_offset: int = 0
    scoring_seconds: float = 0.0
    # Set by the scheduler once it returned the request's head blocks to the pool.
    freed_blocks: int | None = None
    freed_blocks_per_group: list[int] = field(default_factory=list)
    freed_kv_bytes: int = 0
    # The budget the prefill kept (None: none); with --kv-budget auto, as the scheduler chose it.
    kv_budget: int | None = None
    budget_auto: bool = False
    # Steps the prefill took (chunked prefill): the last one pruned it.
    prefill_steps: int = 1
    # Auto budget: the block pool's usage it was chosen at (set by the scheduler).
    pool_usage: float | None = None

    @property
    def pruned(self) -> bool:
        return any(self.layer_offsets)

    @property
    def scored(self) -> bool:
        """Whether the worker ran the pruner on this prompt (it sets one offset per layer)."""
        return bool(self.layer_offsets)

    def kept_tokens(self, layer: int) -> int:
        return self.num_prompt_tokens - self.layer_offsets[layer]

    @property
    def group_offsets(self) -> list[int]:
        """Per KV cache group, the first slot its layers read: blocks [0, offset / block_size) are free
        once the prefill step is done. Every layer of a group reads the same offset (the pruning loop
        propagates at group boundaries), so one shifted block table per group serves decode."""
        offsets: dict[int, int] = {}
        for offset, group in zip(self.layer_offsets, self.layer_groups or [0] * len(self.layer_offsets), strict=True):
            assert offsets.setdefault(group, offset) == offset, f"KV cache group {group} mixes KV offsets"
        return [offsets[group] for group in sorted(offsets)]

    def kept_tokens_mean(self) -> int:
        """Prompt tokens whose KV a layer keeps, averaged over the layers (all of them if unscored)."""
        if not self.layer_offsets:
            return self.num_prompt_tokens
        return round(self.num_prompt_tokens - sum(self.layer_offsets) / len(self.layer_offsets))

    def report(self) -> dict[str, object]:
        """What a client and the metrics see (JSON values only)."""
        return {
            "pruner": self.pruner,
            "two_pass": self.two_pass,
            "pruned": self.pruned,
            "selection_layer": self.selection_layer,
            "prompt_tokens": self.num_prompt_tokens,
            "kept_tokens": self.kept_tokens_mean(),
            "freed_blocks": self.freed_blocks or 0,
            "scoring_seconds": round(self.scoring_seconds, 6) if self.scored else None,
            "kv_budget": self.kv_budget,
            "kv_budget_auto": self.budget_auto,
            "pool_usage": None if self.pool_usage is None else round(self.pool_usage, 4),
            "prefill_steps": self.prefill_steps,
            # Filled in by the scheduler while the request runs (`PruningScheduler`), reported on its last output.
            "shrinks": [],
            "preemptions_avoided": 0,
        }

    def to_dict(self) -> dict[str, object]:
        return {
            "req_id": self.req_id,
            "pruner": self.pruner,
            "two_pass": self.two_pass,
            "num_prompt_tokens": self.num_prompt_tokens,
            "selection_layer": self.selection_layer,
            "selected_tokens": self.selected_tokens,
            "selected_indices": None if self.selected_indices is None else self.selected_indices.tolist(),
            "layer_offsets": list(self.layer_offsets),
            "layer_groups": list(self.layer_groups),
            "group_offsets": self.group_offsets,
            "position_offset": self.position_offset,
            "scoring_seconds": self.scoring_seconds,
            "freed_blocks": self.freed_blocks,
            "freed_blocks_per_group": list(self.freed_blocks_per_group),
            "freed_kv_bytes": self.freed_kv_bytes,
            "kv_budget": self.kv_budget,
            "budget_auto": self.budget_auto,
            "pool_usage": self.pool_usage,
            "prefill_steps": self.prefill_steps,
        }

    def log(self) -> None:
        """The request's one INFO line, written once its blocks are freed."""
        kept = sorted({self.kept_tokens(layer) for layer in range(len(self.layer_offsets))})
        logger.info(
            "kv-pruner request=%s pruner=%s two_pass=%d prompt_tokens=%d selection_layer=%s selected_tokens=%s "
            "kept_tokens=%d kept_tokens_per_layer=%s position_offset=%d freed_blocks=%d "
            "freed_blocks_per_group=%s freed_kv_bytes=%d kv_budget=%s%s scoring_ms=%.1f",
            self.req_id,
            self.pruner,
            self.two_pass,
            self.num_prompt_tokens,
            "none" if self.selection_layer is None else self.selection_layer,
            "none" if self.selected_tokens is None else self.selected_tokens,
            self.kept_tokens_mean(),
            "/".join(map(str, kept)),
            self.position_offset,
            self.freed_blocks or 0,
            "/".join(map(str, self.freed_blocks_per_group)) or "0",
            self.freed_kv_bytes,
            "none" if self.kv_budget is None else self.kv_budget,
            f" (auto at pool usage {self.pool_usage:.2f})" if self.budget_auto and self.pool_usage is not None else "",
            self.scoring_seconds * 1000,
        )
