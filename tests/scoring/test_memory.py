"""The scoring memory estimate against what the torch path actually allocates on a real step."""

from __future__ import annotations

import torch

from asl_vllm.scoring import dispatch
from asl_vllm.scoring.memory import scoring_transient_bytes

HEADS, KV_HEADS, HEAD_SIZE, WINDOW, OBS_LAYERS = 8, 2, 64, 32, 8


def _estimate(num_tokens: int, use_triton: bool, num_reqs: int = 1) -> int:
    return scoring_transient_bytes(
        num_tokens, HEADS, KV_HEADS, HEAD_SIZE, WINDOW, OBS_LAYERS, torch.bfloat16, num_reqs, use_triton
    )


def test_covers_the_torch_paths_tensors():
    num_tokens = 600
    keys = torch.randn(num_tokens, KV_HEADS, HEAD_SIZE).bfloat16()
    q_win = torch.randn(1, WINDOW, HEADS, HEAD_SIZE).bfloat16()
    table = torch.arange(num_tokens, dtype=torch.int32).view(1, -1)
    seq_lens = torch.tensor([num_tokens], dtype=torch.int32)
    hist = dispatch.paged_window_histogram(q_win, keys.view(-1, 1, KV_HEADS, HEAD_SIZE), table, seq_lens, 0.125)
    past = [num_tokens - WINDOW]
    pooled = dispatch.pool_and_group(hist, past, 7, KV_HEADS)
    ranks = dispatch.batch_ranks(pooled.sum(dim=1), past)
    history = torch.stack([ranks] * OBS_LAYERS, dim=1)
    outputs = sum(t.nbytes for t in (q_win, table, hist, pooled, ranks, history))
    logits = 3 * HEADS * WINDOW * num_tokens * 4  # the reference's fp32 logits, masked logits, softmax
    estimate = _estimate(num_tokens, use_triton=False)
    assert outputs + logits <= estimate <= 4 * (outputs + logits)


def test_grows_with_the_prompt_and_the_kernel_path_needs_less():
    assert _estimate(8192, True) < _estimate(32768, True) < _estimate(131072, True)
    assert _estimate(131072, True) < _estimate(131072, False) / 4
    assert _estimate(8192, True, num_reqs=4) > _estimate(8192, True)


def test_the_layer_loop_reserves_its_row_buffers():
    # Final states for every row, the embeddings kept for a re-run, and the re-run's gathered rows.
    from asl_vllm.scoring.memory import layer_loop_bytes

    assert layer_loop_bytes(8192, 576, torch.bfloat16) == 3 * 8192 * 576 * 2
    assert layer_loop_bytes(8192, 576, torch.float32) == 2 * layer_loop_bytes(8192, 576, torch.bfloat16)
