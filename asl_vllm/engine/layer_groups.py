"""Layer buckets as vLLM KV cache groups, so deep layers can free blocks that shallow layers keep.

vLLM 0.32 gives every KV cache group its own block table over one shared block
pool (the hybrid allocator built for sliding-window models). Layers of one
attention type normally merge into one group; `LayerBucketSpec` is a full
attention spec that also carries the index of its bucket of consecutive layers,
and refuses to merge across buckets, so `get_kv_cache_groups` forms one group
per bucket (its uniform-page-size path: every bucket has the same layer count
and page size; vllm/v1/core/kv_cache_utils.py in 0.32, kv_cache_planning.py
from 0.33, unchanged). Every decoder layer of a pruning engine carries this spec (one
bucket when there is one group), so vLLM manages each group with
`asl_vllm.engine.head_manager.PrunedHeadManager`, which frees pruned heads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheSpec, replace_as


@dataclass(frozen=True, kw_only=True)
class LayerBucketSpec(FullAttentionSpec):
    bucket: int = 0

    @classmethod
    def merge(cls, specs: list[Any]) -> Any:
        """Layers of one bucket merge like full attention; layers of different buckets never do."""
        buckets = {getattr(spec, "bucket", None) for spec in specs}
        if len(buckets) != 1:
            raise AssertionError("layers of different layer buckets are separate KV cache groups")
        return replace(super().merge(specs), bucket=specs[0].bucket)

    def is_uniform_with_collection(self, kv_cache_specs: dict[str, KVCacheSpec]) -> bool:
        return all(getattr(spec, "bucket", None) == self.bucket for spec in kv_cache_specs.values()) and (
            super().is_uniform_with_collection(kv_cache_specs)
        )


def bucket_of(layer: int, num_layers: int, num_groups: int) -> int:
    """Consecutive buckets of equal size: layers [b * L / G, (b + 1) * L / G) form bucket b."""
    return layer * num_groups // num_layers


def bucketed_specs(specs: dict[str, KVCacheSpec], layer_names: list[str], num_groups: int) -> dict[str, KVCacheSpec]:
    """The decoder's full-attention specs, each tagged with its layer's bucket."""
    index = {name: layer for layer, name in enumerate(layer_names)}
    tagged: dict[str, KVCacheSpec] = {}
    for name, spec in specs.items():
        if type(spec) is not FullAttentionSpec or name not in index:
            raise RuntimeError(
                f"--kv-layer-groups needs full-attention decoder layers; {name} has {type(spec).__name__}"
            )
        tagged[name] = replace_as(spec, LayerBucketSpec, bucket=bucket_of(index[name], len(layer_names), num_groups))
    return tagged


def group_block_bytes(group: Any) -> int:
    """KV bytes one block of a KV cache group holds: one page per layer of the group."""
    return group.kv_cache_spec.page_size_bytes * len(group.layer_names)
