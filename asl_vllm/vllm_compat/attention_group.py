"""vLLM's attention group with a hook on the metadata of every build.

vLLM 0.32 builds every KV cache group's attention metadata through the private
`AttentionGroup._with_kernel_block_table` (vllm/v1/worker/utils.py): for the
step (`build_metadata`), for CUDA-graph capture
(`build_metadata_for_cudagraph_capture`) and for drafting. Overriding that one
method lets a subclass change each request's row of the common metadata
(`shift_metadata`) for all three, with vLLM's own builders and kernels unchanged;
`build_metadata_for_cudagraph_capture` (public) is wrapped to tell the hook a
capture build from a step's.
The shift applies to the manager's block table, before vLLM maps it to kernel
blocks. `kernel_block_split` reads `AttentionGroup.kernel_block_size`, which
`create_metadata_builders` sets when the backend needs blocks smaller than the
KV cache manager's (`prepare_kernel_block_sizes`, same file).
"""

from __future__ import annotations

from typing import Any

from vllm.v1.attention.backend import CommonAttentionMetadata
from vllm.v1.worker.utils import AttentionGroup


class ShiftedAttentionGroup(AttentionGroup):
    """A subclass implements `shift_metadata`."""

    # Set while vLLM builds metadata for CUDA-graph capture (or a FULL dummy run, which builds the same way).
    capturing: bool = False

    def shift_metadata(self, common_attn_metadata: CommonAttentionMetadata, capture: bool) -> CommonAttentionMetadata:
        """The metadata vLLM's builder gets instead of `common_attn_metadata`; `capture`: a capture build."""
        raise NotImplementedError

    def build_metadata_for_cudagraph_capture(
        self, common_attn_metadata: CommonAttentionMetadata, ubatch_idx: int = 0
    ) -> Any:
        self.capturing = True
        try:
            return super().build_metadata_for_cudagraph_capture(common_attn_metadata, ubatch_idx)
        finally:
            self.capturing = False

    def _with_kernel_block_table(
        self, common_attn_metadata: CommonAttentionMetadata, ubatch_idx: int = 0
    ) -> CommonAttentionMetadata:
        shifted = self.shift_metadata(common_attn_metadata, self.capturing)
        return super()._with_kernel_block_table(shifted, ubatch_idx)

    def kernel_block_split(self) -> int | None:
        """The backend's kernel block size when it splits the manager's blocks; None when it reads them whole."""
        return self.kernel_block_size

    def build_unshifted(self, common_attn_metadata: CommonAttentionMetadata) -> Any:
        """The group's metadata for `common_attn_metadata` as given, without `shift_metadata`."""
        return self.get_metadata_builder().build(0, super()._with_kernel_block_table(common_attn_metadata))
