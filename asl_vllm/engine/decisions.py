"""What the pruner did to one request: kept per request in the worker, logged once."""

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
    block_size: int = 0
    # Set by a re-run (two-pass): RoPE position = slot - position_offset, so kept and decoded
    # tokens are numbered contiguously from 0.
    position_offset: int = 0
    scoring_seconds: float = 0.0
    # Set by the scheduler once it returned the request's head blocks to the pool.
    freed_blocks: int | None = None

    @property
    def pruned(self) -> bool:
        return any(self.layer_offsets)

    @property
    def method(self) -> str:
        return f"{self.pruner}-two-pass" if self.two_pass else self.pruner

    def kept_tokens(self, layer: int) -> int:
        return self.num_prompt_tokens - self.layer_offsets[layer]

    def to_dict(self) -> dict[str, object]:
        return {
            "req_id": self.req_id,
            "pruner": self.pruner,
            "method": self.method,
            "num_prompt_tokens": self.num_prompt_tokens,
            "selection_layer": self.selection_layer,
            "selected_tokens": self.selected_tokens,
            "selected_indices": None if self.selected_indices is None else self.selected_indices.tolist(),
            "layer_offsets": list(self.layer_offsets),
            "position_offset": self.position_offset,
            "scoring_seconds": self.scoring_seconds,
            "freed_blocks": self.freed_blocks,
        }

    def log(self) -> None:
        kept = sorted({self.kept_tokens(layer) for layer in range(len(self.layer_offsets))})
        logger.info(
            "kv-pruner request=%s pruner=%s prompt_tokens=%d selection_layer=%s "
            "selected_tokens=%s kept_tokens_per_layer=%s position_offset=%d freeable_blocks=%d scoring_ms=%.1f",
            self.req_id,
            self.method,
            self.num_prompt_tokens,
            "none" if self.selection_layer is None else self.selection_layer,
            self.selected_tokens,
            "/".join(map(str, kept)),
            self.position_offset,
            min(self.layer_offsets, default=0) // max(self.block_size, 1),
            self.scoring_seconds * 1000,
        )
