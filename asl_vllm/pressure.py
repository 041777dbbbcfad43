"""The budget under memory pressure: the auto budget of a new request and the shrink step of a running one.

`--kv-budget auto` chooses each request's budget when vLLM schedules its
prefill, from the block pool's usage u once the step's blocks are allocated
(the new prompts' included):

    u <= low             no budget (full KV)
    low < u < high       floor + (N - floor) * (high - u) / (high - low)
    u >= high            floor (--kv-budget-min)

for a prompt of N tokens: linear in u between the thresholds
(`--kv-budget-auto-low`, `--kv-budget-auto-high`), so an idle server keeps
every token and a full one keeps the floor.

When a running request cannot get its next block, the scheduler shrinks
running requests in place before it preempts any: the one holding the most
blocks first, to half its kept tokens, never below its floor (`shrunk_keep`).
"""

from __future__ import annotations

from asl_vllm.budget import kept_tokens


def auto_budget(usage: float, num_prompt_tokens: int, floor: int, low: float, high: float) -> int | None:
    """Budget of a prompt scheduled while the pool is `usage` full (None: keep every token)."""
    if usage <= low or num_prompt_tokens <= floor:
        return None
    if usage >= high:
        return floor
    budget = floor + round((num_prompt_tokens - floor) * (high - usage) / (high - low))
    return None if budget >= num_prompt_tokens else budget


def shrunk_keep(kept: int, num_prompt_tokens: int, floor: int, block_size: int) -> int | None:
    """Prompt tokens a request keeping `kept` keeps after one shrink (None: it is at its floor)."""
    floor_keep = kept_tokens(num_prompt_tokens, floor, block_size)
    if kept <= floor_keep:
        return None
    keep = max(floor_keep, kept_tokens(num_prompt_tokens, kept // 2, block_size))
    return keep if keep < kept else floor_keep
