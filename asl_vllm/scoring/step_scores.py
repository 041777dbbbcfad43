"""The window scores of a step's pruning prefills at one layer, each computed on first use.

Each request's rows are one contiguous range of the layer's q and k (the
step's dense tensors, RoPE applied). All requests are scored together: the
keys are presented to the batched window-histogram operation as a paged cache
of block size 1 whose block-table row r lists request r's rows, so one launch
(a Triton kernel on CUDA, `asl_vllm.scoring.paged` elsewhere) serves the whole
batch. ASL and FastKV rank by the pooled window attention summed over all
heads, and a per-KV-head budget keeps tokens by the pooled scores per KV head;
only what is asked for is computed. A pruner with a score of its own computes
it from the layer's q and k held here (GemFilter's last-query score,
`asl_vllm.pruners.gemfilter`).

A request whose prompt was chunked over several steps holds keys this step
did not compute: the earlier chunks' are only in the layer's paged cache. Its
window queries (its last rows, always in the step) are scored against what it
holds there (`CachedKeys`: the earlier chunks' keys and the step's own, just
written by the layer's attention), read in the backend's layout by the same
operation; the scores are those of the same prompt scored in one step.

Under tensor parallelism the layer's q and k hold only this rank's heads: the
scores that sum over heads are summed over the TP group (`HeadShards`) before
anything ranks them, so every rank ranks the same scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from asl_vllm.device_upload import to_device
from asl_vllm.scoring import dispatch
from asl_vllm.scoring.head_shards import SINGLE_RANK, HeadShards
from asl_vllm.scoring.kv_layout import KVLayout


@dataclass(frozen=True)
class LayerCache:
    """A layer's paged KV cache as the scoring operation reads it."""

    k_cache: torch.Tensor
    layout: KVLayout
    k_scale: float = 1.0


@dataclass(frozen=True)
class CachedKeys:
    """The keys a request holds in the layer's cache: `count` tokens from the first slot of `block_row`.

    `block_row`: the request's block-table row from the block of its first held slot on (block-aligned).
    """

    block_row: torch.Tensor
    count: int


class StepScores:
    def __init__(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        starts: Sequence[int],
        counts: Sequence[int],
        scale: float,
        window: int,
        pool_kernel: int,
        shards: HeadShards = SINGLE_RANK,
        cached: Sequence[CachedKeys | None] | None = None,
        layer_cache: LayerCache | None = None,
    ) -> None:
        """query[T, H, d], keys[T, G, d] (this rank's heads); request r owns rows [starts[r], starts[r] + counts[r]).

        `cached[r]` set: request r's keys are read from `layer_cache` instead of its rows of `keys`.
        """
        self.query = query
        self.keys = keys
        self.starts = list(starts)
        self.counts = list(counts)
        self.scale = scale
        self.window = window
        self.pool_kernel = pool_kernel
        self.shards = shards
        self.cached = list(cached) if cached is not None else [None] * len(self.counts)
        self.layer_cache = layer_cache
        # Tokens each request holds (its rows, or what it holds in the cache) and past tokens M_r = N_r - w_r.
        held = [
            count if source is None else source.count for count, source in zip(self.counts, self.cached, strict=True)
        ]
        self.lengths = [count - min(window, count) for count in held]

    @cached_property
    def local_kv_scores(self) -> torch.Tensor:
        """[R, G, max M]: pooled window histogram of this rank's query heads, summed per KV head (zero after M_r)."""
        device = self.keys.device
        count = max(self.counts)
        # Built on the host, where the counts are known: the launcher reads `seq_lens` there without a sync.
        seq_lens = torch.tensor(self.counts, dtype=torch.int32)
        starts = to_device(torch.tensor(self.starts, dtype=torch.int64), device).view(-1, 1)
        counts = to_device(seq_lens.long(), device).view(-1, 1)
        columns = torch.arange(count, device=device).view(1, -1)
        table = (starts + columns).clamp_(max=self.keys.shape[0] - 1).to(torch.int32)
        window = min(self.window, count)
        first_window_row = starts + counts - counts.clamp(max=window)
        # Row i of request r is its query N_r - w_r + i; rows i >= w_r are padding, never read.
        window_rows = (first_window_row + torch.arange(window, device=device).view(1, -1)).clamp_(
            max=self.query.shape[0] - 1
        )
        q_win = self.query[window_rows]  # [R, w, H, d]
        from_cache = [r for r, source in enumerate(self.cached) if source is not None]
        if not from_cache:
            hist = dispatch.paged_window_histogram(q_win, self.keys.unsqueeze(1), table, seq_lens, self.scale)
        else:
            hist = self._mixed_histogram(q_win, table, seq_lens, from_cache)
        return dispatch.pool_and_group(hist, self.lengths, self.pool_kernel, self.keys.shape[1])

    def _mixed_histogram(
        self, q_win: torch.Tensor, table: torch.Tensor, seq_lens: torch.Tensor, from_cache: list[int]
    ) -> torch.Tensor:
        """hist[R, H, max M]: the requests in `from_cache` scored against the layer's cache, the others
        against their rows; one operation each."""
        assert self.layer_cache is not None, "requests whose keys are cached need the layer's cache"
        hist = q_win.new_zeros((len(self.counts), self.query.shape[1], max(self.lengths)), dtype=torch.float32)
        dense = [r for r in range(len(self.counts)) if self.cached[r] is None]
        if dense:
            index = to_device(torch.tensor(dense), q_win.device)
            part = dispatch.paged_window_histogram(
                q_win[index], self.keys.unsqueeze(1), table[index], seq_lens[dense], self.scale
            )
            hist[index, :, : part.shape[-1]] = part
        sources = [self.cached[r] for r in from_cache]
        width = max(len(source.block_row) for source in sources)
        rows = torch.stack([F.pad(source.block_row, (0, width - len(source.block_row))) for source in sources])
        cache = self.layer_cache
        index = to_device(torch.tensor(from_cache), q_win.device)
        part = dispatch.paged_window_histogram(
            q_win[index],
            cache.k_cache,
            rows,
            torch.tensor([source.count for source in sources], dtype=torch.int32),
            self.scale,
            cache.layout,
            cache.k_scale,
        )
        hist[index, :, : part.shape[-1]] = part
        return hist

    @cached_property
    def kv_scores(self) -> torch.Tensor:
        """[R, G, max M]: per local KV head, the pooled histogram summed over every query head reading it."""
        return self.shards.sum_over_replicas(self.local_kv_scores)

    @cached_property
    def token_scores(self) -> torch.Tensor:
        """[R, max M]: ASL's one score per past token, summed over every query head."""
        return self.shards.sum_over_ranks(self.local_kv_scores.sum(dim=1))

    def budget_scores(self, request: int, shared: bool) -> torch.Tensor:
        """What a budget ranks request r's past tokens by: [M_r] token scores (shared), else [G, M_r] per KV head."""
        length = self.lengths[request]
        return self.token_scores[request, :length] if shared else self.kv_scores[request, :, :length]
