"""Access to a Llama-family decoder's parts, so its layer loop can run on token subsets.

Llama, Mistral and Qwen2/3 in vLLM 0.32 share the shape `model.model.{embed_input_ids,
layers, norm}` and the layer call `layer(positions, hidden, residual) -> (hidden,
residual)`; that is all the pruned loop relies on (`asl_vllm.vllm_compat.decoder_model`;
each layer's attention is read through `asl_vllm.vllm_compat.attention_layer`).
"""

from __future__ import annotations

import torch
from torch import nn
from vllm.model_executor.layers.attention import Attention

from asl_vllm.vllm_compat import attention_layer, decoder_model


class DecoderStack:
    def __init__(self, model: nn.Module) -> None:
        inner = decoder_model.decoder_of(model)
        missing = decoder_model.missing_parts(inner)
        if missing:
            raise TypeError(
                f"{type(model).__name__} has no Llama-style decoder ({', '.join(missing)} missing); "
                "KV pruning supports Llama, Mistral and Qwen2/3 models"
            )
        self.inner = inner
        self.layers: list[nn.Module] = decoder_model.decoder_layers(inner)
        self.attentions: list[Attention] = [self._attention_of(layer) for layer in self.layers]
        first = self.attentions[0]
        num_heads, num_kv_heads, head_size = attention_layer.head_shape(first)
        self.num_heads: int = num_heads
        self.num_kv_heads: int = num_kv_heads
        self.head_size: int = head_size
        self.scale: float = attention_layer.softmax_scale(first)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def layer_name(self, layer: int) -> str:
        return attention_layer.layer_name(self.attentions[layer])

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return decoder_model.embed(self.inner, input_ids)

    def final_norm(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return decoder_model.final_norm(self.inner, hidden, residual)

    @staticmethod
    def _attention_of(layer: nn.Module) -> Attention:
        found = [module for module in layer.modules() if isinstance(module, Attention)]
        if len(found) != 1:
            raise TypeError(f"expected one attention module per decoder layer, found {len(found)}")
        return found[0]
