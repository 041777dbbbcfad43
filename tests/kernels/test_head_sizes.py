"""Head sizes that are not a power of two and every GQA group size, kernels against the torch references.

Models: Llama/Mistral 128, Phi-3 96, Qwen 64/128, Gemma 256, and 80/112;
groups 1 (MHA), 2, 4, 7 (a group that pads to 8), 8.
"""

from __future__ import annotations

import pytest
import torch

from asl_vllm.kernels import compaction, window_scores
from asl_vllm.scoring import paged
from asl_vllm.scoring import reference as ref

from .cases import paged_cache

HEAD_SIZES = [64, 80, 96, 112, 128, 256]
GROUPS = [1, 2, 4, 7, 8]
# Every head size with the smallest group and the padded one, every group with a padded and a plain head size.
SHAPES = sorted({(d, g) for d in HEAD_SIZES for g in (1, 7)} | {(d, g) for d in (80, 128) for g in GROUPS} | {(256, 8)})
WINDOW = 8
LENGTHS = [1, WINDOW - 1, WINDOW + 1, 40, 67]


@pytest.mark.parametrize(("head_size", "group"), SHAPES)
def test_window_histogram(head_size, group):
    num_kv_heads = 2 if group < 7 else 1
    num_heads = group * num_kv_heads
    k_cache, table = paged_cache(LENGTHS, 16, num_kv_heads, head_size, torch.float32, seed=head_size + group)
    generator = torch.Generator().manual_seed(group)
    q_win = torch.randn(len(LENGTHS), WINDOW, num_heads, head_size, generator=generator)
    seq_lens = torch.tensor(LENGTHS, dtype=torch.int32)
    scale = head_size**-0.5
    got = window_scores.paged_window_histogram(q_win, k_cache, table, seq_lens, scale)
    expected = paged.paged_window_histogram(q_win, k_cache, table, seq_lens, scale)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head_size", [80, 96, 112, 256])
def test_window_histogram_half_precision(head_size):
    k_cache, table = paged_cache(LENGTHS, 16, 1, head_size, torch.float16, seed=head_size)
    q_win = torch.randn(len(LENGTHS), WINDOW, 7, head_size, generator=torch.Generator().manual_seed(0)).half()
    seq_lens = torch.tensor(LENGTHS, dtype=torch.int32)
    got = window_scores.paged_window_histogram(q_win, k_cache, table, seq_lens, head_size**-0.5)
    expected = paged.paged_window_histogram(q_win, k_cache, table, seq_lens, head_size**-0.5)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_large_heads_split_a_group_over_programs():
    # d = 256 and a window of 32: a group of 8 query heads does not fit one query tile.
    plan = window_scores.launch_plan(1, 100, 32, 8, 1, 256)
    assert plan.members < 8 and plan.members * plan.chunks >= 8
    k_cache, table = paged_cache([100, 33], 16, 1, 256, torch.float32, seed=5)
    q_win = torch.randn(2, 32, 8, 256, generator=torch.Generator().manual_seed(5))
    seq_lens = torch.tensor([100, 33], dtype=torch.int32)
    got = window_scores.paged_window_histogram(q_win, k_cache, table, seq_lens, 0.0625)
    torch.testing.assert_close(got, paged.paged_window_histogram(q_win, k_cache, table, seq_lens, 0.0625))
    keys = paged.gather_tokens(k_cache, table[0], 0, 100)
    torch.testing.assert_close(got[0, :, :68], ref.window_histogram(q_win[0], keys, 0.0625))


@pytest.mark.parametrize("head_size", HEAD_SIZES)
def test_compaction(head_size):
    k_cache, table = paged_cache([90, 20], 16, 3, head_size, torch.bfloat16, seed=head_size)
    v_cache = -k_cache
    generator = torch.Generator().manual_seed(head_size)
    kept = torch.stack([torch.sort(torch.randperm(90, generator=generator)[:40]).values for _ in range(3)])
    expected_k, expected_v = k_cache.clone(), v_cache.clone()
    paged.compact_tail(expected_k, expected_v, table[0], kept, 90)
    compaction.compact_tail(k_cache, v_cache, table[0], kept, 90)
    assert torch.equal(k_cache, expected_k) and torch.equal(v_cache, expected_v)
