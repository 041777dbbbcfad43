"""One attention workspace for every KV cache group's metadata builder.

vLLM 0.32's V1 runner (`GPUModelRunner.initialize_metadata_builders`,
vllm/v1/worker/gpu_model_runner.py) gives each group's builder its own
workspace: FlashInfer's `FlashInferMetadataBuilder._get_workspace_buffer`
(vllm/v1/attention/backends/flashinfer.py) sizes it by the step's token budget,
so G layer groups would cost G times vLLM's one. Model Runner V2
(`vllm/v1/worker/gpu/attn_utils.py`) already shares the first builder's buffer
through the public `set_workspace_buffer`, as done here: it is scratch space
for a kernel's run (each wrapper plans into its own buffers), and the groups'
attention runs one after another on one stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def share_workspace(builders: Iterable[Any]) -> int:
    """Give every builder that takes a workspace the first one's; the number of builders now sharing it."""
    shared = None
    sharing = 0
    for builder in builders:
        if shared is None:
            if hasattr(builder, "_get_workspace_buffer"):
                shared = builder._get_workspace_buffer()
                sharing = 1
        elif hasattr(builder, "set_workspace_buffer"):
            builder.set_workspace_buffer(shared)
            sharing += 1
    return sharing
