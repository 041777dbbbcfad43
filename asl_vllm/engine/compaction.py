"""KV compaction: write each KV head's kept tokens to the tail slots of the request.

The source is this step's own k and v (captured before the attention call), so
source and destination never alias, and writing goes through the backend's
`do_kv_cache_update`, which knows its cache layout (CPU, Flash, ...). Each KV
head may keep different tokens: slot D + j holds, per head g, that head's j-th
kept token, in original order.
"""

from __future__ import annotations

import torch
from vllm.model_executor.layers.attention import Attention


def gather_per_head(tokens: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """tokens[N, G, d], kept[G, K] sorted indices -> out[K, G, d] with out[j, g] = tokens[kept[g, j], g]."""
    heads = torch.arange(tokens.shape[1], device=tokens.device)
    return tokens[kept.t(), heads]


def write_tokens(attention: Attention, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor) -> None:
    """keys/values[K, G, d] (several requests' kept tokens at once) into slots[K], by the backend's own op."""
    attention.impl.do_kv_cache_update(attention, keys.contiguous(), values.contiguous(), attention.kv_cache, slots)
