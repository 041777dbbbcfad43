"""Budget rules: how many tokens each layer of a pruning prefill keeps, and when they are chosen.

One `BudgetRule` subclass per rule in `<name>.py`; a budget's shape is a rule
or an option of one, as kvpress wraps a scorer press in `AdaKVPress` or
`PerLayerCompressionPress` and the press stays unaware:
- `NoBudget` (`none.py`): every layer keeps what it ran;
- `PerLayer` (`per_layer.py`): each layer keeps its own best tokens right
  after it runs; pyramidkv is this rule with a keep per KV cache group
  (`Pruner.group_keeps`);
- `LayerShared` (`layer_shared.py`, the default for a uniform budget): one
  kept set for every layer, ranked by every layer's scores, chosen after the
  last layer;
- per KV head (`--kv-budget-heads per-kv-head`): an option of either budget,
  each KV head keeps its own tokens.
`budget_rule` picks the rule of a prefill's plan; the pruner never sees it.
"""

from __future__ import annotations

from collections.abc import Sequence

from asl_vllm.engine.budget_rules.base import BudgetRule, RequestLayer, StepCache, TailWrite
from asl_vllm.engine.budget_rules.layer_shared import LayerShared
from asl_vllm.engine.budget_rules.none import NoBudget
from asl_vllm.engine.budget_rules.per_layer import PerLayer
from asl_vllm.engine.prefill_plan import PrefillPlan

__all__ = ["BudgetRule", "LayerShared", "NoBudget", "PerLayer", "RequestLayer", "StepCache", "TailWrite", "budget_rule"]


def budget_rule(plan: PrefillPlan, layer_groups: Sequence[int], block_size: int) -> BudgetRule:
    """The rule of `plan`'s budget; `layer_groups[l]`: the KV cache group of layer l."""
    config, num_tokens, num_layers = plan.config, plan.num_prompt_tokens, len(layer_groups)
    group_keeps = config.pruner_class.group_keeps(config, num_tokens, block_size, max(layer_groups) + 1)
    keeps = None if group_keeps is None else [group_keeps[group] for group in layer_groups]
    per_kv_head = config.budget_heads != "shared"
    budgeted = keeps is not None and keeps[0] < num_tokens
    if config.layer_shared_budget and (budgeted or plan.keeps_scores):
        keep = None if keeps is None else keeps[0]
        return LayerShared(keep, num_tokens, num_layers, per_kv_head, plan.keeps_scores)
    if keeps is not None or plan.keeps_scores:
        return PerLayer(keeps, num_layers, per_kv_head, plan.keeps_scores)
    return NoBudget()
