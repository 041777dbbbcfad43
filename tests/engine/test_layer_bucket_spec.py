"""Each layer bucket's KV cache spec differs from every other's, so vLLM never hands one group another's metadata.

vLLM 0.32's `GPUModelRunner._build_attention_metadata` builds a group's metadata once per
(KV cache spec, builder class) and, for a later group with an equal key, only swaps the
block table in (`update_block_table`, which FlashAttention's builder supports): a later
group would then read the first group's lengths, shifted by the first group's offsets.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from asl_vllm.engine.layer_groups import LayerBucketSpec


def test_buckets_are_distinct_metadata_cache_keys():
    first = LayerBucketSpec(block_size=16, num_kv_heads=2, head_size=64, dtype=torch.bfloat16, bucket=0)
    second = replace(first, bucket=1)
    assert first != second
    assert len({(first, object), (second, object), (replace(second), object)}) == 2
