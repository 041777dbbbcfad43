"""Host index tensors reach the device without a copy where they already are."""

from __future__ import annotations

import torch

from asl_vllm.device_upload import to_device


def test_a_tensor_already_on_the_device_is_itself():
    rows = torch.arange(5)
    assert to_device(rows, torch.device("cpu")) is rows


def test_the_copy_keeps_dtype_and_shape():
    rows = torch.tensor([3, 1, 4], dtype=torch.int32)
    moved = to_device(rows, torch.device("meta"))
    assert moved.device.type == "meta" and moved.dtype == torch.int32 and moved.shape == rows.shape
