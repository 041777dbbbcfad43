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
`asl_vllm.policies.gemfilter`).

Under tensor parallelism the layer's q and k hold only this rank's heads: the
scores that sum over heads are summed over the TP group (`HeadShards`) before
anything ranks them, so every rank ranks the same scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import torch

from asl_vllm.device_upload import to_device
from asl_vllm.scoring import dispatch
from asl_vllm.scoring.head_shards import SINGLE_RANK, HeadShards


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
    ) -> None:
        """query[T, H, d], keys[T, G, d] (this rank's heads); request r owns rows [starts[r], starts[r] + counts[r])."""
        self.query = query
        self.keys = keys
        self.starts = list(starts)
        self.counts = list(counts)
        self.scale = scale
        self.window = window
        self.pool_kernel = pool_kernel
        self.shards = shards
        # Past tokens M_r = N_r - min(window, N_r) each request scores.
        self.lengths = [count - min(window, count) for count in self.counts]

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
        hist = dispatch.paged_window_histogram(q_win, self.keys.unsqueeze(1), table, seq_lens, self.scale)
        return dispatch.pool_and_group(hist, self.lengths, self.pool_kernel, self.keys.shape[1])

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
