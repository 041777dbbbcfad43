"""The model runner's persistent batch, as the pruning runner reads it.

vLLM 0.32, `GPUModelRunner` (vllm/v1/worker/gpu_model_runner.py; the CPU
build's `CPUModelRunner` keeps the same state) holds the running requests in
`input_batch`, an `InputBatch` (vllm/v1/worker/gpu_input_batch.py), one row
per request, in the order of the step's tokens: `req_ids` and `num_reqs`
(properties), `num_computed_tokens_cpu_tensor` and `num_prompt_tokens_cpu_tensor`
(CPU tensors, one entry per row; `num_computed_tokens_cpu` is the numpy view of
the first), and `block_table`, a `MultiGroupBlockTable` whose `[group]` is the
`BlockTable` of a KV cache group (`get_device_tensor(num_reqs)`,
vllm/v1/worker/block_table.py). Beside it the runner keeps `query_start_loc`,
a `CpuGpuBuffer` (vllm/v1/utils.py) whose `np` holds each row's first token of
the step once `_prepare_inputs` ran, and `requests`, each request's
`CachedRequestState` by id, whose `block_ids` are its block ids per KV cache
group. None of it is an interface for plugins; these functions are the
plugin's only reads of it.
"""

from __future__ import annotations

from typing import Any

import torch


def batch_req_ids(runner: Any) -> list[str | None]:
    """The request of each row of the persistent batch (`InputBatch.req_ids[:num_reqs]`), in row order."""
    batch = runner.input_batch
    return batch.req_ids[: batch.num_reqs]


def computed_tokens(runner: Any, num_reqs: int) -> list[int]:
    """Tokens each of the first `num_reqs` rows had computed before this step (`InputBatch.num_computed_tokens_cpu`)."""
    return runner.input_batch.num_computed_tokens_cpu[:num_reqs].tolist()


def prefilling_rows(runner: Any, num_reqs: int) -> torch.Tensor:
    """[num_reqs] bool, CPU: whether each row's computed tokens are still short of its prompt before this step
    (`InputBatch.num_computed_tokens_cpu_tensor` < `num_prompt_tokens_cpu_tensor`)."""
    batch = runner.input_batch
    return batch.num_computed_tokens_cpu_tensor[:num_reqs] < batch.num_prompt_tokens_cpu_tensor[:num_reqs]


def group_block_table(runner: Any, group: int, num_reqs: int) -> torch.Tensor:
    """[num_reqs, max_blocks] int32 on the runner's device: KV cache group `group`'s block ids of the first
    `num_reqs` rows, as this step's attention reads them (`InputBatch.block_table[group].get_device_tensor`)."""
    return runner.input_batch.block_table[group].get_device_tensor(num_reqs)


def query_starts(runner: Any, num_reqs: int) -> list[int]:
    """The step's first token of each of the first `num_reqs` rows, and the end of the last
    (`GPUModelRunner.query_start_loc.np[:num_reqs + 1]`, filled by `_prepare_inputs`)."""
    return runner.query_start_loc.np[: num_reqs + 1].tolist()


def request_block_ids(runner: Any, req_id: str) -> tuple[list[int], ...]:
    """The request's block ids per KV cache group, as the worker last received them
    (`GPUModelRunner.requests[req_id].block_ids`, a `CachedRequestState`)."""
    return runner.requests[req_id].block_ids
