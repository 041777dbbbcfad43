"""Host tensors to the device without waiting for the device's queued work.

A plain `.to(cuda)` of pageable memory, or indexing a CUDA tensor with a host
index, makes PyTorch wait for the stream to finish: a host sync. The pruning
prefill builds its small index tensors on the host (row counts are known
there), so each goes through a pinned buffer and an asynchronous copy; the
caching host allocator keeps the buffer until the copy has run.
"""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` (on the host) on `device`; asynchronous for CUDA, the tensor itself where it already is."""
    if tensor.device == device:
        return tensor
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
