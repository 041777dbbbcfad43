"""GemFilter's own score: the last query's raw QK^T, from the q and k a step's `StepScores` holds."""

from __future__ import annotations

import torch

from asl_vllm.config import PrunerConfig
from asl_vllm.pruners import make_pruner
from asl_vllm.pruners.gemfilter import GemFilter
from asl_vllm.scoring import reference as ref
from asl_vllm.scoring.step_scores import StepScores


def test_each_request_of_a_batch_is_scored_by_its_own_last_query():
    # Three requests of different lengths (one shorter than the window) between rows of other requests.
    counts, starts = [100, 20, 57], [3, 103, 134]
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(196, 9, 16, generator=generator)
    keys = torch.randn(196, 3, 16, generator=generator)
    scores = StepScores(query, keys, starts, counts, scale=0.25, window=32, pool_kernel=7)
    pruner = make_pruner(PrunerConfig(pruner="gemfilter").validate().resolve(30))
    assert isinstance(pruner, GemFilter)
    for row, (start, count) in enumerate(zip(starts, counts, strict=True)):
        expected = ref.gemfilter_scores(query[start + count - 1], keys[start : start + count], 32)
        torch.testing.assert_close(pruner.token_scores(scores, row), expected)
        assert pruner.token_scores(scores, row).shape == (max(count - 32, 0),)
