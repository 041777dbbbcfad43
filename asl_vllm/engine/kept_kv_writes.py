"""Kept KV written to the tail slots of a request, from this step's own k and v (the in-place move of KV already
in the cache is `asl_vllm.kernels.compaction`).

The source is this step's own k and v (captured before the attention call), so
source and destination never alias, and writing goes through the backend's
`do_kv_cache_update`, which knows its cache layout (CPU, Flash, ...). Each KV
head may keep different tokens: slot D + j holds, per head g, that head's j-th
kept token, in original order.
"""

from __future__ import annotations

import torch
from vllm.model_executor.layers.attention import Attention

from asl_vllm.vllm_compat.attention_layer import write_kv


def gather_per_head(tokens: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """tokens[N, G, d], kept[G, K] sorted indices -> out[K, G, d] with out[j, g] = tokens[kept[g, j], g]."""
    heads = torch.arange(tokens.shape[1], device=tokens.device)
    return tokens[kept.t(), heads]


def write_tokens(attention: Attention, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor) -> None:
    """keys/values[K, G, d] (several requests' kept tokens at once) into slots[K], by the backend's own op."""
    write_kv(attention, keys.contiguous(), values.contiguous(), slots)
