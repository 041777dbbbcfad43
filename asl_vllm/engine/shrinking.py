"""Shrinking a running request's KV in place: the worker's half of compression instead of preemption.

An auto-budget prefill keeps, per layer, the scores of the past tokens the
layer keeps, in slot order (`BudgetRule.kept_scores`): one row
for a shared budget, one per KV head otherwise, float32, about 4 bytes per kept
token and layer (a KV entry is 2 x G x head_dim x dtype bytes). Under a
layer-shared budget these are the summed shares of all layers, the same for
every layer, so a shrink keeps one set in every layer too. When the
scheduler shrinks the request to first slot D' (`asl_vllm.pressure`), every
layer whose first slot D is below D' keeps its window plus its best
N - D' - w past tokens by the same rule as the prefill's budget
(`budget_select` over the stored scores) and moves them, K and V, to the tail
[D', N) with the in-place compaction kernel. Decode tokens, at slots N + t,
stay where they are, and so do their RoPE positions. This runs before the
step's forward, so the head blocks the scheduler gave to another request in the
same step are read before anything writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from asl_vllm.engine.decoder_stack import DecoderStack
from asl_vllm.scoring import dispatch
from asl_vllm.scoring.kv_layout import layer_layout
from asl_vllm.scoring.reference import budget_select
from asl_vllm.vllm_compat.attention_layer import layer_cache


@dataclass
class ShrinkableKV:
    num_prompt_tokens: int
    layer_offsets: list[int]
    # Per layer: [1 or G, N - layer_offsets[l] - window] scores of the kept past tokens, in slot order.
    scores: list[torch.Tensor]


def kept_past_scores(scores: torch.Tensor, kept: torch.Tensor, keep: int, window: int) -> torch.Tensor:
    """scores[..., M] of a layer's past tokens, kept[G, keep] (`budget_select`) -> [1 or G, keep - window]:
    the scores of the kept past tokens, in slot order, as a shrink reads them."""
    rows = scores.reshape(-1, scores.shape[-1])
    return rows.gather(1, kept[: rows.shape[0], : keep - window].to(rows.device))


class Shrinker:
    """The auto-budget requests of one model runner, with what shrinking them needs."""

    def __init__(self, stack: DecoderStack, layer_groups: Sequence[int], block_size: int, window: int) -> None:
        self.stack = stack
        self.layer_groups = list(layer_groups)
        self.block_size = block_size
        self.window = window
        self.requests: dict[str, ShrinkableKV] = {}

    def track(self, req_id: str, num_prompt_tokens: int, layer_offsets: Sequence[int], scores: list) -> None:
        window = min(self.window, num_prompt_tokens)
        for layer, (offset, layer_scores) in enumerate(zip(layer_offsets, scores, strict=True)):
            expected = num_prompt_tokens - offset - window
            assert layer_scores is not None and layer_scores.shape[1] == expected, (
                f"layer {layer}: kept scores {None if layer_scores is None else tuple(layer_scores.shape)} "
                f"do not match its {expected} kept past tokens"
            )
        self.requests[req_id] = ShrinkableKV(num_prompt_tokens, list(layer_offsets), list(scores))

    def discard(self, req_ids: Sequence[str]) -> None:
        for req_id in req_ids:
            self.requests.pop(req_id, None)

    def shrink(self, req_id: str, first_slot: int, block_rows: Sequence[torch.Tensor]) -> list[int]:
        """Keep slots [first_slot, N) of every layer that holds more; -> the new first slot per KV cache group.

        `block_rows[g]`: the request's block ids of group g, head blocks included (the worker's copy,
        which still names the blocks the scheduler has just freed).
        """
        entry = self.requests[req_id]
        num_tokens = entry.num_prompt_tokens
        assert first_slot % self.block_size == 0 and first_slot < num_tokens, "a shrunk head is whole blocks"
        window = min(self.window, num_tokens)
        keep = num_tokens - first_slot
        for layer, offset in enumerate(entry.layer_offsets):
            if offset >= first_slot:
                continue
            scores = entry.scores[layer]
            ranked = scores[0] if scores.shape[0] == 1 else scores
            kept = budget_select(ranked, num_tokens - offset, keep, window, self.stack.num_kv_heads)
            attention = self.stack.attentions[layer]
            row = block_rows[self.layer_groups[layer]]
            cache = layer_cache(attention)
            slots = (kept + offset).to(device=cache.device, dtype=torch.int32)
            dispatch.compact_tail(cache, None, row, slots, num_tokens, layer_layout(attention))
            entry.scores[layer] = kept_past_scores(scores, kept, keep, window)
            entry.layer_offsets[layer] = first_slot
        first_of_group = {}
        for layer, group in enumerate(self.layer_groups):
            first_of_group.setdefault(group, entry.layer_offsets[layer])
        return [first_of_group[group] for group in sorted(first_of_group)]
