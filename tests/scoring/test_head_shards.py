"""Scores under tensor parallelism: every simulated rank sees the whole model's scores, bit for bit alike.

Each rank holds vLLM's head split (query heads in N slices; KV heads in N
slices, or each replicated on N / G ranks when N > G). The all-gather over the
TP group is simulated in two passes: the first records what every rank
contributes to each gather, the second answers each gather with all ranks'
contributions in rank order, as the collective does.
"""

from __future__ import annotations

import pytest
import torch

from asl_vllm.config import PrunerConfig
from asl_vllm.pruners import make_pruner
from asl_vllm.scoring.head_shards import HeadShards
from asl_vllm.scoring.reference import budget_select
from asl_vllm.scoring.step_scores import StepScores

NUM_HEADS, NUM_KV_HEADS, DIM, WINDOW = 8, 2, 16, 32
COUNTS = (90, 50)
# GemFilter ranks by a score of its own, computed from the q and k a rank's `StepScores` holds.
GEMFILTER = make_pruner(PrunerConfig(pruner="gemfilter").validate().resolve(30))


class RecordedGroup:
    """An all-gather among `size` ranks run one after the other: record, then replay."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls: list[list[torch.Tensor]] = [[] for _ in range(size)]

    def recorder(self, rank: int):
        def gather(local: torch.Tensor) -> torch.Tensor:
            self.calls[rank].append(local.clone())
            return torch.stack([local] * self.size)

        return gather

    def replayer(self, rank: int):
        served = iter(range(len(self.calls[rank])))

        def gather(local: torch.Tensor) -> torch.Tensor:
            call = next(served)
            assert torch.equal(local, self.calls[rank][call])
            return torch.stack([calls[call] for calls in self.calls])

        return gather


def _kv_heads_of(rank: int, size: int) -> slice:
    if size <= NUM_KV_HEADS:
        per_rank = NUM_KV_HEADS // size
        return slice(rank * per_rank, (rank + 1) * per_rank)
    head = rank // (size // NUM_KV_HEADS)
    return slice(head, head + 1)


def _rank_scores(query: torch.Tensor, keys: torch.Tensor, rank: int, size: int, gather) -> dict:
    per_rank = NUM_HEADS // size
    scores = StepScores(
        query[:, rank * per_rank : (rank + 1) * per_rank],
        keys[:, _kv_heads_of(rank, size)],
        [0, COUNTS[0]],
        list(COUNTS),
        scale=0.25,
        window=WINDOW,
        pool_kernel=7,
        shards=HeadShards(size, rank, max(1, size // NUM_KV_HEADS), gather),
    )
    return {
        "token": scores.token_scores,
        "kv": scores.kv_scores,
        "gemfilter": [GEMFILTER.token_scores(scores, request) for request in range(len(COUNTS))],
        "per_head_kept": budget_select(scores.budget_scores(0, shared=False), COUNTS[0], 40, WINDOW, keys.shape[1]),
    }


@pytest.mark.parametrize("size", [2, 4, 8])
def test_every_rank_gets_the_whole_models_scores(size):
    generator = torch.Generator().manual_seed(size)
    query = torch.randn(sum(COUNTS), NUM_HEADS, DIM, generator=generator)
    keys = torch.randn(sum(COUNTS), NUM_KV_HEADS, DIM, generator=generator)
    whole = StepScores(query, keys, [0, COUNTS[0]], list(COUNTS), scale=0.25, window=WINDOW, pool_kernel=7)
    group = RecordedGroup(size)
    for rank in range(size):
        _rank_scores(query, keys, rank, size, group.recorder(rank))
    results = [_rank_scores(query, keys, rank, size, group.replayer(rank)) for rank in range(size)]
    whole_kept = budget_select(whole.budget_scores(0, shared=False), COUNTS[0], 40, WINDOW, NUM_KV_HEADS)
    for rank, result in enumerate(results):
        torch.testing.assert_close(result["token"], whole.token_scores)
        # Summed in rank order on every rank: the same bits everywhere, so ranking agrees everywhere.
        assert torch.equal(result["token"], results[0]["token"])
        for request in range(len(COUNTS)):
            torch.testing.assert_close(result["gemfilter"][request], GEMFILTER.token_scores(whole, request))
            assert torch.equal(result["gemfilter"][request], results[0]["gemfilter"][request])
        # A KV head's score sums all its query heads, also when they are split over the head's replicas.
        heads = _kv_heads_of(rank, size)
        torch.testing.assert_close(result["kv"], whole.kv_scores[:, heads])
        assert torch.equal(result["per_head_kept"], whole_kept[heads])
        replica_zero = rank - rank % max(1, size // NUM_KV_HEADS)
        assert torch.equal(result["kv"], results[replica_zero]["kv"])


def test_one_rank_leaves_scores_alone():
    local = torch.arange(6.0).view(2, 3)
    shards = HeadShards()
    assert shards.sum_over_ranks(local) is local
    assert shards.sum_over_replicas(local) is local
