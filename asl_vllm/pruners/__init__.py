"""Pruners: one `Pruner` subclass per pruner in `<name>.py`, listed in `registry`.

Every pruner shares one scoring core (`asl_vllm.scoring.reference`) and one
engine mechanism (propagation, compaction, freeing); a pruner declares its
settings and budget rule, and decides the selection layer.
"""

from asl_vllm.pruners.base import Pruner
from asl_vllm.pruners.registry import PRUNERS, make_pruner, pruner_class

__all__ = ["PRUNERS", "Pruner", "make_pruner", "pruner_class"]
