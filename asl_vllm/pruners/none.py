"""`none`: the plugin stays out of the way and vLLM runs unchanged."""

from __future__ import annotations

from asl_vllm.pruners.base import Pruner


class NoPruner(Pruner):
    name = "none"
    summary = "(default) vLLM unchanged."
    prunes = False
