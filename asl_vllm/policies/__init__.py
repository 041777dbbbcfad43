"""Selection policies: when a request's tokens are selected, and for which layers it is scored.

Every pruner shares one scoring core (`asl_vllm.scoring.reference`) and one
engine mechanism (propagation, compaction, freeing); a policy only decides the
selection layer.
"""

from asl_vllm.policies.base import SelectionPolicy, make_policy

__all__ = ["SelectionPolicy", "make_policy"]
