"""vLLM's own fused kernels for the eager pruning layer loop, which vLLM's compiled forward does not need.

In its default (compiled) mode vLLM 0.32 routes elementwise layers to their
plain-torch implementations so that torch.compile can fuse them: RMSNorm goes
through `vllm.ir` ops whose priority is `native`, and `CustomOp` layers
(rotary embedding, activations) pick `forward_native` at construction
(`CustomOp.dispatch_forward`). The pruning loop runs the same layers eagerly,
where those unfused torch ops cost several times vLLM's C++/CUDA kernels (an
8k-token prefill on the CPU build spends ~0.8 s more in them than compiled).
`fused_kernels(model)` switches, for the loop of a compiled engine only
(an eager engine's loop keeps the layers exactly as vLLM's forward runs them),
to vLLM's fused kernels: the `vllm_c` IR providers (plus the same `torch.ops._C` kernels
registered for the CPU build, where vLLM ships them but does not register
them), and the platform method of each `CustomOp` left on `forward_native`.

vLLM 0.32 touch points: `CustomOp._forward_method`, the private attribute
`CustomOp.dispatch_forward` sets (vllm/model_executor/custom_op.py); the IR ops
`vllm.ir.ops.rms_norm` / `fused_add_rms_norm` (vllm/ir/): a provider registered
with `register_impl` at import, and `set_priority` for the loop; the CPU build's
`torch.ops._C.rms_norm` / `fused_add_rms_norm` kernels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from vllm import ir
from vllm.model_executor.custom_op import CustomOp
from vllm.platforms import current_platform

CPU_PROVIDER = "asl_vllm_cpu_c"
# Fastest first; an IR op skips providers that are not supported here or for the call's arguments.
EAGER_PRIORITY = ["vllm_c", CPU_PROVIDER, "native"]


@ir.ops.rms_norm.register_impl(
    CPU_PROVIDER,
    supported=current_platform.is_cpu(),
    supports_args=lambda x, weight, epsilon, variance_size=None: (
        variance_size is None and (weight is None or weight.dtype == x.dtype)
    ),
)
def _cpu_rms_norm(x: Tensor, weight: Tensor | None, epsilon: float, variance_size: int | None = None) -> Tensor:
    output = torch.empty_like(x)
    torch.ops._C.rms_norm(output, x, weight, epsilon)
    return output


@ir.ops.fused_add_rms_norm.register_impl(
    CPU_PROVIDER,
    supported=current_platform.is_cpu(),
    supports_args=lambda x, x_residual, weight, epsilon, variance_size=None: (
        variance_size is None and (weight is None or weight.dtype == x.dtype)
    ),
    inplace=True,
)
def _cpu_fused_add_rms_norm(
    x: Tensor, x_residual: Tensor, weight: Tensor | None, epsilon: float, variance_size: int | None = None
) -> tuple[Tensor, Tensor]:
    torch.ops._C.fused_add_rms_norm(x, x_residual, weight, epsilon)
    return x, x_residual


def _platform_method(op: CustomOp) -> object:
    return op.forward_cpu if current_platform.is_cpu() else op.forward_cuda


@contextlib.contextmanager
def fused_kernels(model: nn.Module) -> Iterator[None]:
    """Within the block, `model`'s layers run vLLM's eager-mode kernels."""
    # Only layers left on plain torch; ones vLLM compiles on their own (`compile_native`) stay as they are.
    ops = [
        module
        for module in model.modules()
        if isinstance(module, CustomOp) and module._forward_method == module.forward_native
    ]
    chosen = [op._forward_method for op in ops]
    with contextlib.ExitStack() as stack:
        for ir_op in (ir.ops.rms_norm, ir.ops.fused_add_rms_norm):
            stack.enter_context(ir_op.set_priority([name for name in EAGER_PRIORITY if name in ir_op.impls]))
        try:
            for op in ops:
                op._forward_method = _platform_method(op)
            yield
        finally:
            for op, method in zip(ops, chosen, strict=True):
                op._forward_method = method
