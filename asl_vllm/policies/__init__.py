"""Pruning methods: one `Pruner` subclass per method in `<name>.py`, listed in `registry`.

Every pruner shares one scoring core (`asl_vllm.scoring.reference`) and one
engine mechanism (propagation, compaction, freeing); a pruner declares its
settings and budget rule, and decides the selection layer.
"""

from asl_vllm.policies.base import Pruner
from asl_vllm.policies.registry import PRUNERS, make_policy, pruner_class

__all__ = ["PRUNERS", "Pruner", "make_policy", "pruner_class"]
