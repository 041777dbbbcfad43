"""Attention metadata for shifted KV: a subset of the step's requests keeps its own block-table rows."""

from __future__ import annotations

import torch

from asl_vllm.engine.attention_layout import RequestView, StepTables, build_common_metadata


def _tables() -> StepTables:
    block_table = torch.arange(12, dtype=torch.int32).view(3, 4)
    return StepTables(block_table, block_size=16, is_prefilling=torch.tensor([False, True, True]))


def test_select_keeps_the_chosen_requests_rows_in_order():
    tables = _tables()
    assert tables.select([0, 1, 2]) is tables
    chosen = tables.select([2, 1])
    assert chosen.block_table.tolist() == [[8, 9, 10, 11], [4, 5, 6, 7]]
    assert chosen.is_prefilling.tolist() == [True, True]
    assert chosen.block_size == 16


def test_a_re_run_request_reads_its_tail_with_fresh_positions():
    """16 kept rows of a 48-token request in slots [32, 48): attention reads 16 tokens from block 2 on."""
    views = [RequestView(num_rows=16, seq_len=48, kv_offset=32)]
    positions = torch.arange(16)
    common = build_common_metadata(_tables().select([1]), views, torch.arange(32, 48), positions)
    assert common.seq_lens_cpu_upper_bound.tolist() == [16]
    assert common.block_table_tensor[0, :2].tolist() == [6, 7]
    assert common.positions.tolist() == list(range(16))
