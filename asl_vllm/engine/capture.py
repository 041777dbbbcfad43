"""Forward hooks that keep the q, k, v (RoPE applied) each attention layer just received.

The attention kernels do not return probabilities, so window scores are
recomputed from these; the same tensors are the source of KV compaction, which
then writes through the backend's own cache-update op and works for any cache
layout. The hooks exist only while the layer loop runs (`with capture:`), so
the model vLLM compiles or captures never contains them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from asl_vllm.engine.decoder_stack import DecoderStack


class AttentionCapture:
    def __init__(self, stack: DecoderStack) -> None:
        self.stack = stack
        self._last: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> AttentionCapture:
        self._handles = [
            attention.register_forward_hook(self._hook_for(index))
            for index, attention in enumerate(self.stack.attentions)
        ]
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._last.clear()

    def _hook_for(self, index: int):
        def hook(_module, args, _output) -> None:
            query, key, value = args[:3]
            self._last[index] = (query, key, value)

        return hook

    def take(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q[T, H*d], k[T, G*d], v[T, G*d] of `layer` in this forward; forgotten after."""
        return self._last.pop(layer)
