"""KVOffsets without an engine: the shifted metadata equals a plain per-row reference while rows move.

vLLM rebuilds the persistent batch every step (rows are added, condensed and
swapped), so the per-row table must follow the rows; a step with nothing to
change must write nothing, and a shift must keep vLLM's `max_seq_len`. A step
here is what the runner does: `refresh` after vLLM updated the batch,
`prepare_step` after it prepared the inputs (vLLM has just rewritten each
group's device block table from its host copy), then one `shift` per group.
"""

from __future__ import annotations

import functools
import random

import pytest
import torch
from vllm.v1.attention.backend import CommonAttentionMetadata

from asl_vllm.engine.kv_offsets import KVOffsets, PrunedKV

BLOCK = 16
WIDTH = 12
MAX_REQS = 8
MAX_MODEL_LEN = WIDTH * BLOCK


def _common(seq_lens: list[int], table: torch.Tensor, max_seq_len: int | None = None) -> CommonAttentionMetadata:
    rows = len(seq_lens)
    return CommonAttentionMetadata(
        query_start_loc=torch.arange(rows + 1, dtype=torch.int32),
        query_start_loc_cpu=torch.arange(rows + 1, dtype=torch.int32),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32),
        seq_lens_cpu_upper_bound=torch.tensor(seq_lens, dtype=torch.int32),
        num_reqs=rows,
        num_actual_tokens=rows,
        max_query_len=1,
        max_seq_len=max(seq_lens) if max_seq_len is None else max_seq_len,
        block_table_tensor=table[:rows],
        slot_mapping=torch.zeros(rows, dtype=torch.int64),
    )


def _lengths(seq_lens: list[int]) -> torch.Tensor:
    """vLLM's persistent `seq_lens`: every row of the batch, zero past the step's rows."""
    lengths = torch.zeros(MAX_REQS, dtype=torch.int32)
    lengths[: len(seq_lens)] = torch.tensor(seq_lens, dtype=torch.int32)
    return lengths


def _rows_of(tables: list[torch.Tensor], num_reqs: int, group: int) -> torch.Tensor:
    return tables[group][:num_reqs]


def _offsets(num_groups: int, always_shift: bool = False) -> KVOffsets:
    return KVOffsets(num_groups, BLOCK, MAX_REQS, torch.device("cpu"), always_shift)


def _reference(
    table: torch.Tensor, seq_lens: list[int], rows: list[str | None], pruned: dict[str, PrunedKV], group: int
) -> tuple[torch.Tensor, list[int]]:
    """Row by row: skip the row's first D_g / block_size blocks (the last block repeats past the end)."""
    expected = torch.empty(len(rows), WIDTH, dtype=table.dtype)
    lengths = []
    for row, req_id in enumerate(rows):
        offset = pruned[req_id].group_offsets[group] if req_id in pruned else 0
        for column in range(WIDTH):
            expected[row, column] = table[row, min(column + offset // BLOCK, WIDTH - 1)]
        lengths.append(seq_lens[row] - offset)
    return expected, lengths


def test_capture_keeps_vllms_max_seq_len():
    # vLLM captures with max_seq_len = max_model_len over dummy lengths of 1
    # (`GPUModelRunner._build_attention_metadata(for_cudagraph_capture=True)`).
    offsets = _offsets(num_groups=2, always_shift=True)
    table = torch.arange(MAX_REQS * WIDTH, dtype=torch.int32).view(MAX_REQS, WIDTH)
    capture = _common([1] * 4, table, max_seq_len=MAX_MODEL_LEN)
    for group in range(2):
        assert offsets.shift(group, capture, capture=True).max_seq_len == MAX_MODEL_LEN


def test_a_pruned_step_keeps_vllms_max_seq_len():
    offsets = _offsets(num_groups=1)
    offsets.add("a", PrunedKV((2 * BLOCK,)))
    offsets.refresh(["a", "b"])
    table = torch.arange(MAX_REQS * WIDTH, dtype=torch.int32).view(MAX_REQS, WIDTH)
    shifted = offsets.shift(0, _common([100, 40], table, max_seq_len=100))
    assert shifted.max_seq_len == 100
    assert shifted.seq_lens.tolist() == [100 - 2 * BLOCK, 40]


@pytest.mark.parametrize("num_groups", [1, 3])
@pytest.mark.parametrize("always_shift", [False, True])
def test_shift_follows_moving_rows(num_groups: int, always_shift: bool):
    generator = random.Random(num_groups * 2 + always_shift)
    offsets = _offsets(num_groups, always_shift)
    pruned: dict[str, PrunedKV] = {}
    names = [f"r{index}" for index in range(12)]
    dummy = torch.zeros(MAX_REQS, WIDTH, dtype=torch.int32)
    capture = _common([1] * MAX_REQS, dummy, MAX_MODEL_LEN)
    captured = [offsets.shift(group, capture, capture=True).seq_lens for group in range(num_groups)]
    for step in range(30):
        if generator.random() < 0.3:
            leaving = generator.sample(sorted(pruned), k=min(len(pruned), generator.randint(0, 2)))
            offsets.discard(leaving)
            for req_id in leaving:
                del pruned[req_id]
        for req_id in generator.sample(names, k=2):
            if generator.random() < 0.4:
                groups = tuple(BLOCK * generator.randint(0, 4) for _ in range(num_groups))
                pruned[req_id] = PrunedKV(groups, generator.choice([0, 0, BLOCK * generator.randint(1, 3)]))
                offsets.add(req_id, pruned[req_id])
        rows: list[str | None] = generator.sample(names, k=generator.randint(1, MAX_REQS))
        if step % 5 == 4 and len(rows) > 1:
            rows[generator.randrange(len(rows))] = None
        offsets.refresh(rows)

        seq_lens = [generator.randint(5 * BLOCK, WIDTH * BLOCK) for _ in rows]
        # vLLM's device block tables, one per group, as it rewrites them at the start of the step.
        host_tables = [torch.randint(1, 1000, (MAX_REQS, WIDTH), dtype=torch.int32) for _ in range(num_groups)]
        tables = [table.clone() for table in host_tables]
        offsets.prepare_step(
            _lengths(seq_lens), _lengths(seq_lens), functools.partial(_rows_of, tables, len(rows)), len(rows)
        )
        for group in range(num_groups):
            shifted = offsets.shift(group, _common(seq_lens, tables[group]))
            expected_table, expected_lengths = _reference(host_tables[group], seq_lens, rows, pruned, group)
            # Columns past cdiv(max_seq_len, block size) are read by no backend.
            used = -(-max(seq_lens) // BLOCK)
            assert torch.equal(shifted.block_table_tensor[:, :used], expected_table[:, :used]), (step, group)
            assert shifted.seq_lens.tolist() == expected_lengths, (step, group)
            assert shifted.seq_lens_cpu_upper_bound.tolist() == expected_lengths, (step, group)
            if always_shift:  # a graph reads vLLM's table (checked above) and the length buffer capture was given
                assert captured[group][: len(rows)].tolist() == expected_lengths, (step, group)
            assert shifted.max_seq_len == max(seq_lens)

        positions = torch.tensor([100 + row for row in range(len(rows))], dtype=torch.int64)
        offsets.shift_positions(positions, torch.arange(len(rows)))
        expected_positions = [
            100 + row - (pruned[req_id].position_offset if req_id in pruned else 0) for row, req_id in enumerate(rows)
        ]
        assert positions.tolist() == expected_positions, step


def test_a_step_with_no_pruned_request_writes_and_launches_nothing():
    offsets = _offsets(num_groups=2)
    table = torch.arange(MAX_REQS * WIDTH, dtype=torch.int32).view(MAX_REQS, WIDTH)
    common = _common([40, 50, 60], table)
    offsets.refresh(["a", "b", "c"])
    offsets.refresh(["c", "a"])
    assert offsets.writes == 0
    assert offsets.shift(0, common) is common and offsets.shift(1, common) is common

    offsets.add("b", PrunedKV((BLOCK, 0)))
    offsets.refresh(["a", "b", "c"])
    assert offsets.writes == 1
    assert offsets.shift(0, common) is not common
    assert offsets.shift(1, common) is common, "a group no row is shifted in stays vLLM's"
    offsets.refresh(["a", "b", "c"])
    assert offsets.writes == 1, "unchanged rows: nothing to write"

    offsets.discard(["b"])
    offsets.refresh(["a", "c"])
    assert offsets.writes == 2, "the rows of a request that left are zeroed once"
    before = offsets.shift(0, common)
    assert before is common
    offsets.refresh(["c", "a", "d"])
    offsets.refresh(["d"])
    assert offsets.writes == 2


def test_graphs_read_the_same_buffers_whether_or_not_a_row_is_pruned():
    # FULL CUDA graphs replay kernels on the tensors the capture's metadata held: vLLM's own per-group block
    # tables, and each group's length buffer.
    offsets = _offsets(num_groups=2, always_shift=True)
    host = torch.arange(MAX_REQS * WIDTH, dtype=torch.int32).view(MAX_REQS, WIDTH)
    tables = [host.clone() for _ in range(2)]
    capture = [offsets.shift(group, _common([1] * MAX_REQS, tables[group], MAX_MODEL_LEN), True) for group in range(2)]

    def step() -> list[CommonAttentionMetadata]:
        for table in tables:
            table.copy_(host)  # vLLM's commit_block_table
        offsets.prepare_step(_lengths([40, 50]), _lengths([40, 50]), lambda group: tables[group][:2], 2)
        built = [offsets.shift(group, _common([40, 50], tables[group])) for group in range(2)]
        # A graph reads the capture's tensors: the same storage, holding what this step's metadata holds.
        for group in range(2):
            assert built[group].block_table_tensor.data_ptr() == capture[group].block_table_tensor.data_ptr()
            assert capture[group].seq_lens[:2].tolist() == built[group].seq_lens.tolist()
        return built

    offsets.refresh(["a", "b"])
    unpruned = step()
    assert [common.seq_lens.tolist() for common in unpruned] == [[40, 50], [40, 50]]
    offsets.add("b", PrunedKV((BLOCK, 2 * BLOCK)))
    offsets.refresh(["a", "b"])
    pruned = step()
    assert pruned[0].seq_lens.tolist() == [40, 50 - BLOCK]
    assert pruned[1].seq_lens.tolist() == [40, 50 - 2 * BLOCK]
    assert pruned[1].block_table_tensor[1, :4].tolist() == host[1, 2:6].tolist()
    assert pruned[0].block_table_tensor[0].tolist() == host[0].tolist(), "an unpruned row stays as vLLM wrote it"


def test_a_graph_step_with_no_pruned_request_shifts_no_table():
    offsets = _offsets(num_groups=3, always_shift=True)
    host = torch.arange(MAX_REQS * WIDTH, dtype=torch.int32).view(MAX_REQS, WIDTH)
    table = host.clone()
    offsets.refresh(["a", "b"])
    offsets.prepare_step(_lengths([40, 50]), _lengths([40, 50]), lambda group: pytest.fail("no table is read"), 2)
    common = _common([40, 50], table)
    assert all(offsets.shift(group, common) is common for group in range(3))
    assert torch.equal(table, host)


def test_request_slots_are_reused_and_grow():
    offsets = _offsets(num_groups=1)
    for index in range(2 * MAX_REQS + 1):
        offsets.add(f"r{index}", PrunedKV((BLOCK * (index % 3),)))
    offsets.discard([f"r{index}" for index in range(0, 2 * MAX_REQS + 1, 2)])
    offsets.add("late", PrunedKV((2 * BLOCK,)))
    rows: list[str | None] = ["r1", "late", "r0", "r5"]
    offsets.refresh(rows)
    table = torch.arange(MAX_REQS * WIDTH, dtype=torch.int32).view(MAX_REQS, WIDTH)
    shifted = offsets.shift(0, _common([100] * 4, table))
    assert shifted.seq_lens.tolist() == [100 - BLOCK, 100 - 2 * BLOCK, 100, 100 - 2 * BLOCK]
