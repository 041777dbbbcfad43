"""Which attention heads this rank holds, and how its per-head scores become whole-model scores.

Under vLLM 0.32's tensor parallelism (TP size N, H query heads, G KV heads;
`QKVParallelLinear`), rank r holds query heads [r H/N, (r+1) H/N) and, when
N <= G, KV heads [r G/N, (r+1) G/N). When N > G, each KV head is replicated on
N/G consecutive ranks (rank r holds KV head r // (N/G)) and its query heads are
split among those replicas.

ASL's token score sums over every query head: the sum over ranks of each rank's
partial sum. A KV head's score (the per-KV-head budget) sums over the query
heads that read it: the rank's own when N <= G, the sum over the replicas when
KV heads are replicated. Both sums are an all-gather over vLLM's TP group
followed by additions in rank order, so every rank adds the same operands in
the same order and gets the same bits (an all-reduce promises the sum, not the
same rounding on every rank). Ranks, the selection layer and the kept tokens
are deterministic functions of these scores, so they agree on every rank.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# [*] on every rank -> [N, *]: every rank's tensor, in rank order.
Gather = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class HeadShards:
    size: int = 1
    rank: int = 0
    # Ranks holding a copy of each KV head (N / G when N > G, else 1).
    kv_head_replicas: int = 1
    gather: Gather | None = None

    def sum_over_ranks(self, local: torch.Tensor) -> torch.Tensor:
        """A sum over every query head, from this rank's partial sum over its own."""
        if self.size == 1:
            return local
        return _sum_in_order(self._gather(local))

    def sum_over_replicas(self, local: torch.Tensor) -> torch.Tensor:
        """Per local KV head, the sum over all its query heads, from this rank's partial sum."""
        if self.kv_head_replicas == 1:
            return local
        first = self.rank - self.rank % self.kv_head_replicas
        return _sum_in_order(self._gather(local)[first : first + self.kv_head_replicas])

    def _gather(self, local: torch.Tensor) -> torch.Tensor:
        assert self.gather is not None, "a sharded layer needs the TP group's all-gather"
        return self.gather(local)


SINGLE_RANK = HeadShards()


def _sum_in_order(parts: torch.Tensor) -> torch.Tensor:
    total = parts[0].clone()
    for part in parts[1:]:
        total += part
    return total


def tensor_parallel_shards(total_num_kv_heads: int) -> HeadShards:
    """This worker's shards of vLLM's TP group (vLLM 0.32 `vllm.distributed.parallel_state.get_tp_group`)."""
    from vllm.distributed.parallel_state import get_tp_group

    group = get_tp_group()
    if group.world_size == 1:
        return SINGLE_RANK

    def gather(local: torch.Tensor) -> torch.Tensor:
        return group.all_gather(local.unsqueeze(0).contiguous(), dim=0)

    return HeadShards(
        size=group.world_size,
        rank=group.rank_in_group,
        kv_head_replicas=max(1, group.world_size // total_num_kv_heads),
        gather=gather,
    )
