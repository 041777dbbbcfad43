"""Paged caches for the kernel tests: requests scattered over shuffled blocks of a garbage-filled pool."""

from __future__ import annotations

import torch

GARBAGE = 1e4  # every slot outside a request's blocks: reading one shows in the result


def paged_cache(
    lengths: list[int], block_size: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> k_cache[num_blocks, block_size, G, d] (random keys in the requests' slots), block_table[R, max_blocks].

    Each table row also lists one spare block past the request's last, as
    vLLM's rows do; every block not holding a request's token is garbage.
    """
    generator = torch.Generator().manual_seed(seed)
    blocks_per_req = max(-(-n // block_size) for n in lengths) + 1
    num_blocks = len(lengths) * blocks_per_req + 2
    cache = torch.full((num_blocks, block_size, num_kv_heads, head_dim), GARBAGE)
    table = torch.randperm(num_blocks, generator=generator)[: len(lengths) * blocks_per_req]
    table = table.view(len(lengths), blocks_per_req).int()
    for r, n in enumerate(lengths):
        slots = torch.arange(n)
        cache[table[r, slots // block_size].long(), slots % block_size] = torch.randn(
            n, num_kv_heads, head_dim, generator=generator
        )
    return cache.to(dtype), table
