"""The budget rule: kept tokens end at N, start on a block boundary, and cover the budget."""

import pytest

from asl_vllm.budget import kept_tokens, tail_offset


@pytest.mark.parametrize("block_size", [16, 32, 128])
@pytest.mark.parametrize("num_tokens", [1, 31, 128, 129, 1000, 6000, 8191])
@pytest.mark.parametrize("keep", [1, 32, 1024, 2048, 9000])
def test_tail_offset_is_block_aligned_and_keeps_enough(num_tokens, keep, block_size):
    offset = tail_offset(num_tokens, keep, block_size)
    assert offset % block_size == 0
    assert 0 <= offset <= num_tokens
    kept = kept_tokens(num_tokens, keep, block_size)
    assert kept == num_tokens - offset
    assert kept >= min(keep, num_tokens)
    assert kept < keep + block_size or keep >= num_tokens


def test_known_values():
    assert tail_offset(6000, 1024, 128) == 4864
    assert kept_tokens(6000, 1024, 128) == 1136
    assert tail_offset(1000, 1024, 128) == 0
