"""What the pruner did to one request: kept per request in the worker, logged once."""

from __future__ import annotations

from dataclasses import dataclass, field

from asl_vllm.log import logger


@dataclass
class PruneDecision:
    req_id: str
    pruner: str
    num_prompt_tokens: int
    selection_layer: int | None = None
    selected_tokens: int | None = None
    # Per layer: first kept slot D (0 = full KV). Decode attention reads [D, seq_len).
    layer_offsets: list[int] = field(default_factory=list)
    block_size: int = 0
    # KV cache group of each layer (one group per bucket of consecutive layers).
    layer_groups: list[int] = field(default_factory=list)
    scoring_seconds: float = 0.0
    # Set by the scheduler once it returned the request's head blocks to the pool.
    freed_blocks: int | None = None

    @property
    def pruned(self) -> bool:
        return any(self.layer_offsets)

    def kept_tokens(self, layer: int) -> int:
        return self.num_prompt_tokens - self.layer_offsets[layer]

    @property
    def group_offsets(self) -> list[int]:
        """Per KV cache group, the first slot any of its layers still reads: its blocks
        [0, offset / block_size) are free once the prefill step is done."""
        offsets: dict[int, int] = {}
        for offset, group in zip(self.layer_offsets, self._groups()):
            offsets[group] = min(offset, offsets.get(group, offset))
        return [offsets[group] for group in sorted(offsets)]

    @property
    def freeable_blocks_per_group(self) -> list[int]:
        return [offset // max(self.block_size, 1) for offset in self.group_offsets]

    @property
    def freeable_layer_blocks(self) -> int:
        """Freeable blocks weighted by the layers they hold: comparable across group layouts."""
        layers = self.num_layers_per_group
        return sum(blocks * count for blocks, count in zip(self.freeable_blocks_per_group, layers))

    @property
    def num_layers_per_group(self) -> list[int]:
        groups = self._groups()
        return [groups.count(group) for group in sorted(set(groups))]

    def _groups(self) -> list[int]:
        return self.layer_groups or [0] * len(self.layer_offsets)

    def to_dict(self) -> dict[str, object]:
        return {
            "req_id": self.req_id,
            "pruner": self.pruner,
            "num_prompt_tokens": self.num_prompt_tokens,
            "selection_layer": self.selection_layer,
            "selected_tokens": self.selected_tokens,
            "layer_offsets": list(self.layer_offsets),
            "layer_groups": list(self.layer_groups),
            "group_offsets": self.group_offsets,
            "scoring_seconds": self.scoring_seconds,
            "freed_blocks": self.freed_blocks,
        }

    def log(self) -> None:
        kept = sorted({self.kept_tokens(layer) for layer in range(len(self.layer_offsets))})
        logger.info(
            "kv-pruner request=%s pruner=%s prompt_tokens=%d selection_layer=%s "
            "selected_tokens=%s kept_tokens_per_layer=%s freeable_blocks_per_group=%s "
            "freeable_layer_blocks=%d scoring_ms=%.1f",
            self.req_id,
            self.pruner,
            self.num_prompt_tokens,
            "none" if self.selection_layer is None else self.selection_layer,
            self.selected_tokens,
            "/".join(map(str, kept)),
            "/".join(map(str, self.freeable_blocks_per_group)),
            self.freeable_layer_blocks,
            self.scoring_seconds * 1000,
        )
