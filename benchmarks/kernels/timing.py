"""Time each scoring kernel against its torch path: time, achieved bandwidth, share of the device's peak, speed-up.

Runs where only torch and triton are installed (no vLLM): it imports the
scoring core and the kernels, nothing of the engine. On a CUDA machine both
the Triton kernels and the torch references (`asl_vllm.scoring.paged`) run on
the GPU, at 8k, 32k and 128k tokens by default. Without CUDA only the torch
path is timed, on the CPU (4k tokens by default): the Triton kernels need
CUDA (their interpreter is for correctness, not speed).

The window histogram is timed on the keys as the engine scores a prefill
(the step's dense keys as block-size-1 pages) and on a FLASH_ATTN layer
cache (NHD, block size 16); the compaction on that cache. Bandwidth counts
the bytes each kernel must move: the histogram reads the keys twice (a
softmax-statistics pass over all N keys, a histogram pass over the N - w past
keys) and writes (zero-fills, then stores) the fp32 histogram; the compaction
reads and writes K and V of the kept tokens. The same count divides the
torch path's time, so the speed-up is the ratio of times. The peak is the
device's memory clock x bus width (`--peak-gbps` to give it); a 1 GiB
device-to-device copy is timed too, as the practical ceiling.

    python -m benchmarks.kernels.timing
    python -m benchmarks.kernels.timing --lengths 8192 --heads 32 --kv-heads 8 --head-dim 128
"""

from __future__ import annotations

import argparse
import functools
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch

from asl_vllm.scoring import dispatch, paged
from asl_vllm.scoring.kv_layout import KVLayout

CUDA_LENGTHS = [8192, 32768, 131072]
CPU_LENGTHS = [4096]


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


def peak_bandwidth(device: torch.device) -> float | None:
    """Bytes/s the device's memory interface peaks at (DDR: two transfers per clock), None if unknown."""
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", 0)
    bus_bits = getattr(props, "memory_bus_width", 0)
    if not clock_khz or not bus_bits:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8


def copy_bandwidth(device: torch.device, repeats: int) -> float:
    """Bytes/s a 1 GiB device-to-device copy moves (read + write): what a kernel can practically reach."""
    source = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    return 2 * source.numel() / _time(lambda: target.copy_(source), device, repeats)


def _cases(args: argparse.Namespace, length: int, device: torch.device, dtype: torch.dtype) -> list[Case]:
    """One request of `length` tokens: dense keys, and a FLASH_ATTN cache with a shuffled block table."""
    heads, kv_heads, dim, window, block = args.heads, args.kv_heads, args.head_dim, args.window, args.block_size
    element = torch.empty(0, dtype=dtype).element_size()
    scale = dim**-0.5
    q_win = torch.randn(1, window, heads, dim, device=device, dtype=dtype)
    seq_lens = torch.tensor([length], dtype=torch.int32, device=device)
    past = length - window

    keys = torch.randn(length, kv_heads, dim, device=device, dtype=dtype)
    rows = torch.arange(length, dtype=torch.int32, device=device).view(1, length)
    blocks = -(-length // block)
    # FLASH_ATTN's [num_blocks, G, N, 2d] view of an NHD (LBNHC) buffer [num_blocks, N, G, 2d].
    kv_cache = torch.randn(blocks, block, kv_heads, 2 * dim, device=device, dtype=dtype).transpose(1, 2)
    layout = KVLayout("FLASH_ATTN")
    table = torch.randperm(blocks, device=device).int().view(1, -1)

    hist = torch.rand(1, heads, past, device=device)
    lengths = [past]
    ranks = torch.stack(
        [paged.batch_ranks(torch.rand(1, past, device=device), lengths) for _ in range(args.obs_layers)], dim=1
    )
    keep = min(args.keep, length)
    kept = torch.stack([torch.sort(torch.randperm(length, device=device)[:keep]).values for _ in range(kv_heads)])
    histogram_bytes = (length + past) * kv_heads * dim * element + 2 * heads * past * 4
    return [
        Case(
            "window hist (dense)",
            lambda m: m.paged_window_histogram(q_win, keys.view(length, 1, kv_heads, dim), rows, seq_lens, scale),
            "window_scores",
            histogram_bytes + 2 * length * 4,
        ),
        Case(
            "window hist (cache)",
            lambda m: m.paged_window_histogram(q_win, kv_cache, table, seq_lens, scale, layout),
            "window_scores",
            histogram_bytes + 2 * blocks * 4,
        ),
        Case(
            "compaction (K and V)",
            lambda m: m.compact_tail(kv_cache, None, table[0], kept, length, layout),
            "compaction",
            2 * 2 * keep * kv_heads * dim * element,
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
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kernels.timing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--lengths", type=int, nargs="+", help="prompt tokens (default: 8k 32k 128k on CUDA, 4k on CPU)"
    )
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
    parser.add_argument("--peak-gbps", type=float, help="the device's peak memory bandwidth, GB/s (default: queried)")
    return parser


def measure(
    args: argparse.Namespace, device: torch.device, dtype: torch.dtype, with_triton: bool, peak: float | None
) -> None:
    """Print one line per operation and length: the torch path, and with Triton the kernel against it."""
    header = f"{'operation':<22}{'tokens':>8}{'torch ms':>11}{'torch GB/s':>12}"
    print(header + (f"{'triton ms':>11}{'triton GB/s':>13}{'% of peak':>11}{'speed-up':>10}" if with_triton else ""))
    for length in args.lengths:
        if length <= args.window:
            raise SystemExit(f"--lengths must exceed the window ({args.window}), got {length}")
        for case in _cases(args, length, device, dtype):
            torch_s = _time(functools.partial(case.run, paged), device, args.repeats)
            line = f"{case.name:<22}{length:>8}{torch_s * 1e3:>11.3f}{case.bytes_moved / torch_s / 1e9:>12.2f}"
            if with_triton and case.kernel_module is not None:
                kernel = importlib.import_module(f"asl_vllm.kernels.{case.kernel_module}")
                triton_s = _time(functools.partial(case.run, kernel), device, args.repeats)
                achieved = case.bytes_moved / triton_s
                share = f"{100 * achieved / peak:>10.1f}%" if peak else f"{'n/a':>11}"
                line += f"{triton_s * 1e3:>11.3f}{achieved / 1e9:>13.1f}{share}{torch_s / triton_s:>9.1f}x"
            print(line, flush=True)


def main() -> None:
    args = build_parser().parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    args.lengths = args.lengths or (CUDA_LENGTHS if device.type == "cuda" else CPU_LENGTHS)
    if device.type == "cuda":
        copy = copy_bandwidth(device, args.repeats)
        spec = args.peak_gbps * 1e9 if args.peak_gbps else peak_bandwidth(device)
        shown = f"{spec / 1e9:.0f} GB/s" if spec else "unknown (pass --peak-gbps; % below is of the copy)"
        print(f"device: {torch.cuda.get_device_name(device)}, cache dtype {dtype}")
        print(f"peak memory bandwidth {shown}; a 1 GiB device copy reaches {copy / 1e9:.0f} GB/s")
        measure(args, device, dtype, dispatch.triton_available(), spec or copy)
    else:
        print(f"no CUDA device: timing the torch path only on the CPU (the Triton kernels need CUDA); dtype {dtype}")
        measure(args, device, dtype, False, None)


if __name__ == "__main__":
    main()
