"""SnapKV (Li et al., arXiv 2404.14469): no selection layer, every layer keeps --kv-budget tokens."""

from __future__ import annotations

from asl_vllm.pruners.base import Pruner


class SnapKV(Pruner):
    name = "snapkv"
    summary = "no selection, every layer keeps --kv-budget tokens per KV head."
    needs_budget = True
