"""Time each scoring kernel against its torch path; print time, achieved bandwidth and the speed-up.

On a CUDA machine both the Triton kernels and the torch references
(`asl_vllm.scoring.paged`) run on the GPU. Without CUDA only the torch path is
timed: the Triton kernels need CUDA (their interpreter is for correctness,
not speed). Bandwidth counts the bytes an operation must move at least once
(K of every token read, the output written), so it is comparable between the
two paths and with the device's peak.

    python -m benchmarks.kernels                       # 4k and 8k tokens
    python -m benchmarks.kernels --lengths 4096 32768 131072
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch

from asl_vllm.scoring import paged


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[ModuleType], object]
    kernel_module: str | None  # None: one implementation for both paths
    bytes_moved: float


def _time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Mean seconds per call after one warm-up call (which also compiles the kernel)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / repeats


def _cases(args: argparse.Namespace, length: int, device: torch.device, dtype: torch.dtype) -> list[Case]:
    """One request of `length` tokens with a shuffled block table, as vLLM would hold it."""
    heads, kv_heads, dim, window = args.heads, args.kv_heads, args.head_dim, args.window
    blocks = -(-length // args.block_size)
    k_cache = torch.randn(blocks, args.block_size, kv_heads, dim, device=device, dtype=dtype)
    v_cache = torch.randn_like(k_cache)
    table = torch.randperm(blocks, device=device).int().view(1, -1)
    q_win = torch.randn(1, window, heads, dim, device=device, dtype=dtype)
    seq_lens = torch.tensor([length], dtype=torch.int32, device=device)
    past = length - window
    hist = torch.rand(1, heads, past, device=device)
    lengths = [past]
    ranks = torch.stack(
        [paged.batch_ranks(torch.rand(1, past, device=device), lengths) for _ in range(args.obs_layers)], dim=1
    )
    keep = min(args.keep, length)
    kept = torch.stack([torch.sort(torch.randperm(length, device=device)[:keep]).values for _ in range(kv_heads)])
    element = k_cache.element_size()
    scale = dim**-0.5
    return [
        Case(
            "window histogram",
            lambda m: m.paged_window_histogram(q_win, k_cache, table, seq_lens, scale),
            "window_scores",
            length * kv_heads * dim * element + heads * past * 4,
        ),
        Case(
            "pool + GQA sum",
            lambda m: m.pool_and_group(hist, lengths, args.kernel, kv_heads),
            "score_reduce",
            (heads + kv_heads) * past * 4,
        ),
        Case("ranks (stable sort)", lambda m: paged.batch_ranks(hist[:, 0], lengths), None, past * (4 + 8)),
        Case(
            "rank variance",
            lambda m: m.batch_rank_variance(ranks, lengths, [args.keep - window]),
            "score_reduce",
            ranks.numel() * ranks.element_size(),
        ),
        Case(
            "compaction (K and V)",
            lambda m: m.compact_tail(k_cache, v_cache, table[0], kept, length),
            "compaction",
            2 * 2 * keep * kv_heads * dim * element,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192], help="prompt tokens (default: 4k 8k)")
    parser.add_argument("--heads", type=int, default=32, help="query heads (default: Llama-3.1-8B's 32)")
    parser.add_argument("--kv-heads", type=int, default=8, help="KV heads (default 8)")
    parser.add_argument("--head-dim", type=int, default=128, help="head dim (default 128)")
    parser.add_argument("--window", type=int, default=32, help="observation window w (default 32)")
    parser.add_argument("--kernel", type=int, default=7, help="pooling kernel S (default 7)")
    parser.add_argument("--obs-layers", type=int, default=8, help="layers in the rank variance (default 8)")
    parser.add_argument("--keep", type=int, default=2048, help="tokens kept by the compaction (default 2048)")
    parser.add_argument("--block-size", type=int, default=16, help="KV cache block size (default 16)")
    parser.add_argument(
        "--dtype", choices=["bfloat16", "float16", "float32"], help="cache dtype (default: bf16 on CUDA, fp32 on CPU)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (default 5)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    with_triton = device.type == "cuda"
    if with_triton:
        import importlib

        def kernel(name: str) -> ModuleType:
            return importlib.import_module(f"asl_vllm.kernels.{name}")

        print(f"device: {torch.cuda.get_device_name()}, cache dtype {dtype}")
    else:
        print(f"no CUDA device: timing the torch path only on the CPU (the Triton kernels need CUDA); dtype {dtype}")
    header = f"{'operation':<22}{'tokens':>8}{'torch ms':>11}{'torch GB/s':>12}"
    print(header + (f"{'triton ms':>11}{'triton GB/s':>13}{'speed-up':>10}" if with_triton else ""))
    for length in args.lengths:
        if length <= args.window:
            raise SystemExit(f"--lengths must exceed the window ({args.window}), got {length}")
        for case in _cases(args, length, device, dtype):
            torch_s = _time(functools.partial(case.run, paged), device, args.repeats)
            line = f"{case.name:<22}{length:>8}{torch_s * 1e3:>11.3f}{case.bytes_moved / torch_s / 1e9:>12.2f}"
            if with_triton and case.kernel_module is not None:
                triton_s = _time(functools.partial(case.run, kernel(case.kernel_module)), device, args.repeats)
                line += f"{triton_s * 1e3:>11.3f}{case.bytes_moved / triton_s / 1e9:>13.1f}{torch_s / triton_s:>9.1f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
