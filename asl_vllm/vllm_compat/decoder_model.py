"""The parts of a vLLM Llama-family model that the pruning layer loop runs one by one.

vLLM 0.32 (vllm/model_executor/models/llama.py, qwen2.py, qwen3.py; Mistral
subclasses Llama): a `*ForCausalLM` keeps its decoder as `model` (`LlamaModel`,
`Qwen2Model`, ...), whose `__init__` sets up `layers` (the decoder layers, each
called as `layer(positions, hidden_states, residual) -> (hidden_states,
residual)`) and `norm` (the final RMSNorm, called as `norm(hidden, residual)`),
and whose `embed_input_ids(input_ids)` embeds tokens. Their `forward` runs
exactly that loop; a model with another shape is refused (`missing_parts`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# What the layer loop needs of a decoder (`LlamaModel`).
DECODER_PARTS = ("layers", "norm", "embed_input_ids")


def decoder_of(model: nn.Module) -> Any:
    """The decoder of a `*ForCausalLM` (its `model`), or None when it has none."""
    return getattr(model, "model", None)


def missing_parts(decoder: Any) -> list[str]:
    """The parts of `DECODER_PARTS` that `decoder` lacks (none for a Llama-family decoder)."""
    return [name for name in DECODER_PARTS if not hasattr(decoder, name)]


def decoder_layers(decoder: Any) -> list[nn.Module]:
    """The decoder's layers, first to last."""
    return list(decoder.layers)


def embed(decoder: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """The decoder's embeddings of `input_ids`."""
    return decoder.embed_input_ids(input_ids)


def final_norm(decoder: Any, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The decoder's final norm of the last layer's output (hidden + residual)."""
    out, _ = decoder.norm(hidden, residual)
    return out
