"""GemFilter (Shi et al., arXiv 2409.17422): the last query's raw QK^T at a fixed filter layer,
then the whole model re-runs on the selected tokens with fresh positions."""

from __future__ import annotations

import torch

from asl_vllm.pruners.fastkv import FastKV
from asl_vllm.scoring.reference import gemfilter_scores
from asl_vllm.scoring.step_scores import StepScores


class GemFilter(FastKV):
    name = "gemfilter"
    summary = (
        "score by the last query at filter layer --fixed-layer, stop there, re-run the whole model on the "
        "selected --asl-select-k tokens with fresh positions; every layer keeps only those tokens and the rest "
        "of the prompt's KV blocks return to the pool."
    )
    reference_fixed_layer = 13
    two_pass = True

    def token_scores(self, scores: StepScores, row: int) -> torch.Tensor:
        """[M]: the request's last query's inner products with its keys, summed over every head (over the
        TP group too, so every rank ranks alike) and pooled (`reference.gemfilter_scores`)."""
        start, count = scores.starts[row], scores.counts[row]
        keys = scores.keys[start : start + count]
        return scores.shards.sum_over_ranks(gemfilter_scores(scores.query[start + count - 1], keys, scores.window))
