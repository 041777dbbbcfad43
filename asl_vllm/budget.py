"""The budget rule: how many tokens a pruned layer keeps, and where.

Kept tokens are compacted to the tail of the request's slot range so that the
freed head is a whole number of blocks: offset D is a multiple of the block
size and the layer keeps the N - D >= keep tokens in slots [D, N). Decode
tokens then land at their natural slots N + t, and attention for that layer
reads `seq_len - D` tokens starting at block D / block_size. The scheduler and
the worker both call this one function, so their block arithmetic agrees.
"""


def tail_offset(num_tokens: int, keep: int, block_size: int) -> int:
    """First slot D kept when `keep` of `num_tokens` prompt tokens stay (0: nothing pruned)."""
    if keep >= num_tokens:
        return 0
    return (num_tokens - keep) // block_size * block_size


def kept_tokens(num_tokens: int, keep: int, block_size: int) -> int:
    """Tokens actually kept: `keep` rounded up so the freed head is whole blocks."""
    return num_tokens - tail_offset(num_tokens, keep, block_size)
