"""Access to a Llama-family decoder's parts, so its layer loop can run on token subsets.

Llama, Mistral and Qwen2/3 in vLLM 0.32 share the shape `model.model.{embed_input_ids,
layers, norm}` and the layer call `layer(positions, hidden, residual) -> (hidden,
residual)`; that is all the pruned loop relies on.
"""

from __future__ import annotations

import torch
from torch import nn
from vllm.model_executor.layers.attention import Attention


class DecoderStack:
    def __init__(self, model: nn.Module) -> None:
        inner = getattr(model, "model", None)
        missing = [name for name in ("layers", "norm", "embed_input_ids") if not hasattr(inner, name)]
        if missing:
            raise TypeError(
                f"{type(model).__name__} has no Llama-style decoder ({', '.join(missing)} missing); "
                "KV pruning supports Llama, Mistral and Qwen2/3 models"
            )
        self.inner = inner
        self.layers: list[nn.Module] = list(inner.layers)
        self.attentions: list[Attention] = [self._attention_of(layer) for layer in self.layers]
        first = self.attentions[0]
        self.num_heads: int = first.num_heads
        self.num_kv_heads: int = first.num_kv_heads
        self.head_size: int = first.head_size
        self.scale: float = float(first.impl.scale)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def layer_name(self, layer: int) -> str:
        return self.attentions[layer].layer_name

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.inner.embed_input_ids(input_ids)

    def final_norm(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        out, _ = self.inner.norm(hidden, residual)
        return out

    @staticmethod
    def _attention_of(layer: nn.Module) -> Attention:
        found = [module for module in layer.modules() if isinstance(module, Attention)]
        if len(found) != 1:
            raise TypeError(f"expected one attention module per decoder layer, found {len(found)}")
        return found[0]
