"""Pruning requests and scored layers for budget-rule tests, built without an engine."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from asl_vllm.config import PrunerConfig
from asl_vllm.engine.budget_rules import RequestLayer
from asl_vllm.engine.live_request import RequestStep
from asl_vllm.engine.prefill_plan import PrefillPlan
from asl_vllm.engine.pruning_request import PruningRequest
from asl_vllm.scoring.step_scores import StepScores

NUM_HEADS, NUM_KV_HEADS, DIM, WINDOW, BLOCK_SIZE = 6, 3, 8, 32, 16
# The request's first slot in a layer's slot mapping: its slots are FIRST_SLOT + prompt index.
FIRST_SLOT = 1000
# The depth configs are resolved for (the asl defaults need one); the rules read only the layer groups given.
MODEL_LAYERS = 30


def pruning_request(num_tokens: int, groups: Sequence[int], **settings) -> PruningRequest:
    """The request at row 0 of a step, its whole prompt to prune under `settings` (resolved for its depth)."""
    return _request(PrunerConfig(**settings).validate().resolve(MODEL_LAYERS), num_tokens, groups, False)


def auto_budget_request(num_tokens: int, groups: Sequence[int], budget: int | None, **settings) -> PruningRequest:
    """The same under `--kv-budget auto`, with `budget` the one the scheduler chose (None: full KV)."""
    config = PrunerConfig(kv_budget="auto", **settings).validate().resolve(MODEL_LAYERS)
    return _request(config.with_budget(budget), num_tokens, groups, True)


def _request(config: PrunerConfig, num_tokens: int, groups: Sequence[int], keeps_scores: bool) -> PruningRequest:
    plan = PrefillPlan("req", config, num_tokens, keeps_scores)
    step = RequestStep("req", 0, num_tokens, num_tokens, plan)
    return PruningRequest(step, 0, torch.arange(num_tokens), groups, BLOCK_SIZE)


def scored_layer(request: PruningRequest, index: int, seed: int) -> RequestLayer:
    """Random q, k and v of the request's current rows at layer `index`, scored as the loop scores them."""
    generator = torch.Generator().manual_seed(seed)
    count = request.count
    query = torch.randn(count, NUM_HEADS, DIM, generator=generator)
    keys = torch.randn(count, NUM_KV_HEADS, DIM, generator=generator)
    values = torch.randn(count, NUM_KV_HEADS, DIM, generator=generator)
    scores = StepScores(query, keys, [0], [count], scale=DIM**-0.5, window=WINDOW, pool_kernel=7)
    slots = torch.arange(FIRST_SLOT, FIRST_SLOT + request.step.seq_len)
    # A one-step prefill's rules write through the returned tail, never the step's caches.
    return RequestLayer(index, scores, 0, keys, values, slots, cache=None)
