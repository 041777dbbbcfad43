"""Per-layer attention metadata and slot mapping in vLLM's forward context, for a layer loop that changes them.

vLLM 0.32: attention layers read their metadata and slot mapping by layer name
from `get_forward_context()` (vllm/forward_context.py: `ForwardContext.attn_metadata`
and `.slot_mapping`, dicts by layer name that the model runner built for the
step; `model_executor/layers/attention/attention.py:get_attention_context`).
In an eager step they can be replaced between layers. `LayerContexts` copies
both dicts first, so the runner's own dicts stay as it built them.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.forward_context import get_forward_context


class LayerContexts:
    """The current step's forward context, with per-layer entries this loop may replace."""

    def __init__(self) -> None:
        self._context = get_forward_context()
        self._context.attn_metadata = dict(self._context.attn_metadata)
        self._context.slot_mapping = dict(self._context.slot_mapping)

    def slot_mapping(self, layer_name: str) -> torch.Tensor:
        """The slot of every row of the step in `layer_name`'s KV cache group."""
        return self._context.slot_mapping[layer_name]

    def set_layer(self, layer_name: str, attn_metadata: Any, slot_mapping: torch.Tensor) -> None:
        """What `layer_name`'s attention reads for its next call."""
        self._context.attn_metadata[layer_name] = attn_metadata
        self._context.slot_mapping[layer_name] = slot_mapping
