"""Host time the plugin adds to a decode step, against vLLM's own input preparation of the same step.

Builds vLLM's model runner without an engine and without a model (the
plugin's runner class, `PruningCPUModelRunner` or `PruningGPUModelRunner`, on a
config-only Llama): its persistent batch holds `batch` requests, each with a
4k-token context, in `groups` KV cache groups (one block table each), and every
request has one token scheduled, as in a decode step.

- vLLM: `GPUModelRunner._prepare_inputs` (vLLM's own, not the plugin's hook):
  block tables committed, positions, token ids, query starts, sequence lengths,
  slot mappings of every group. It excludes the metadata builds, so the ratio
  errs against the plugin. The CPU build computes the slot mappings on the host
  (a C++ kernel per group, most of the time there); CUDA queues them, so the
  second ratio, against the rest (the host's share on CUDA), is the one to read.
- plugin: what the plugin does on such a step, in the order the engine does
  it: `step_scheduled` (the step's plans, before `_update_states`),
  `KVOffsets.refresh` (after it), `inputs_prepared` (after `_prepare_inputs`:
  the position shifts, `KVOffsets.prepare_step` and the step planning), and one
  `KVOffsets.shift` per group (each metadata build), with `always_shift` as an
  engine with FULL CUDA graphs runs it. On the CPU, where vLLM's device block
  table is its host table, the in-place shifts of "all pruned" compound from
  step to step: only their time is meant.

Two batch states: no pruned request, and every request pruned (each group its
own offset, two-pass position offsets). "moved" rewrites the per-row table every
step (the batch's rows change, as when a request joins or leaves); "steady" is
a step whose rows did not move. Each figure is the median of `--repeats`
repeats of `--steps` steps, with the range of the repeats. Without CUDA all
runs on the CPU, where the device work is done by the host too (the CPU build's
case); with CUDA the device work is queued and only the host time counts.

    python -m benchmarks.engine.step_overhead
    python -m benchmarks.engine.step_overhead --batches 1 64 256 --groups 1 10 --repeats 7 --json overhead.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common.results_file import ResultsFile

CONTEXT = 4096
BLOCK_SIZE = 16
MAX_MODEL_LEN = 32768
TARGET = 0.05


@dataclass(frozen=True)
class Timing:
    median_us: float
    low_us: float
    high_us: float

    def __str__(self) -> str:
        return f"{self.median_us:8.1f} [{self.low_us:.1f}, {self.high_us:.1f}]"


def _timing(step: Callable[[], object], device: torch.device, steps: int, repeats: int) -> Timing:
    """Median and range over repeats of the mean host time of one call, after warm-up calls."""
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(steps):
            step()
        samples.append((time.perf_counter() - began) / steps * 1e6)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return Timing(statistics.median(samples), min(samples), max(samples))


def _runner_factory(model_dir: str, max_num_seqs: int, device: torch.device) -> Callable[[], Any]:
    """Builds the plugin's runner class as vLLM's worker would, minus the model and the KV cache."""
    from vllm.config import set_current_vllm_config
    from vllm.distributed import ensure_model_parallel_initialized, init_distributed_environment
    from vllm.engine.arg_utils import EngineArgs
    from vllm.platforms import current_platform
    from vllm.utils.network_utils import get_open_port

    config = EngineArgs(
        model=model_dir,
        skip_tokenizer_init=True,
        max_model_len=MAX_MODEL_LEN,
        max_num_seqs=max_num_seqs,
        block_size=BLOCK_SIZE,
        load_format="dummy",
    ).create_engine_config()
    # As vLLM's worker does first: the C++ stand-ins of its Triton kernels on a CPU without Triton.
    current_platform.register_triton_kernel_overrides()
    with set_current_vllm_config(config):
        # One rank: vLLM's runner reads its (trivial) pipeline and tensor-parallel groups.
        init_distributed_environment(1, 0, f"tcp://127.0.0.1:{get_open_port()}", 0, "gloo")
        ensure_model_parallel_initialized(1, 1)
    if device.type == "cuda":
        from asl_vllm.engine.gpu_worker import PruningGPUModelRunner as Runner
    else:
        from asl_vllm.engine.cpu_worker import PruningCPUModelRunner as Runner
    return lambda: Runner(config, device)


def _kv_cache_config(num_groups: int) -> Any:
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec

    spec = FullAttentionSpec(block_size=BLOCK_SIZE, num_kv_heads=1, head_size=64, dtype=torch.bfloat16)
    groups = [KVCacheGroupSpec([f"model.layers.{group}.self_attn.attn"], spec) for group in range(num_groups)]
    return KVCacheConfig(num_blocks=1 << 20, kv_cache_tensors=[], kv_cache_groups=groups)


def _fill_batch(runner: Any, batch: int, num_groups: int) -> Any:
    """Put `batch` requests with CONTEXT computed tokens into the persistent batch; the decode step's output."""
    from vllm import SamplingParams
    from vllm.v1.core.sched.output import CachedRequestData, NewRequestData, SchedulerOutput
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    blocks = CONTEXT // BLOCK_SIZE + 1
    new = [
        NewRequestData(
            req_id=f"r{index}",
            prompt_token_ids=[1] * (CONTEXT + 1),
            mm_features=[],
            sampling_params=SamplingParams(max_tokens=16),
            pooling_params=None,
            block_ids=tuple(
                list(range(1 + (index * num_groups + group) * blocks, 1 + (index * num_groups + group + 1) * blocks))
                for group in range(num_groups)
            ),
            num_computed_tokens=CONTEXT,
            lora_request=None,
        )
        for index in range(batch)
    ]
    output = SchedulerOutput(
        scheduled_new_reqs=new,
        scheduled_cached_reqs=CachedRequestData.make_empty(),
        num_scheduled_tokens={request.req_id: 1 for request in new},
        total_num_scheduled_tokens=batch,
        scheduled_spec_decode_tokens={},
        scheduled_encoder_inputs={},
        num_common_prefix_blocks=[0] * num_groups,
        finished_req_ids=set(),
        free_encoder_mm_hashes=[],
    )
    GPUModelRunner._update_states(runner, output)
    return output


def measure(
    runner: Any, batch: int, num_groups: int, device: torch.device, steps: int, repeats: int
) -> list[dict[str, Any]]:
    from vllm.v1.attention.backend import CommonAttentionMetadata
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    from asl_vllm.engine.kv_offsets import KVOffsets, PrunedKV

    # What `initialize_kv_cache` sets up for the batch, without allocating the cache or its backends.
    runner.kv_cache_config = _kv_cache_config(num_groups)
    runner.may_reinitialize_input_batch(runner.kv_cache_config)
    output = _fill_batch(runner, batch, num_groups)
    scheduled = np.ones(batch, dtype=np.int32)
    GPUModelRunner._prepare_inputs(runner, output, scheduled)
    vllm_time = _timing(lambda: GPUModelRunner._prepare_inputs(runner, output, scheduled), device, steps, repeats)
    # The slot mappings alone (one kernel per group; done by the host on the CPU build, queued on CUDA).
    query_start_loc, positions = runner.query_start_loc.gpu[: batch + 1], runner.positions[:batch]
    slots_time = _timing(
        lambda: runner.input_batch.block_table.compute_slot_mapping(batch, query_start_loc, positions),
        device,
        steps,
        repeats,
    )
    host_us = vllm_time.median_us - slots_time.median_us

    req_ids = list(runner.input_batch.req_ids[:batch])
    tables = [runner.input_batch.block_table[group].get_device_tensor(batch) for group in range(num_groups)]
    commons = [
        CommonAttentionMetadata(
            query_start_loc=runner.query_start_loc.gpu[: batch + 1],
            query_start_loc_cpu=runner.query_start_loc.cpu[: batch + 1],
            seq_lens=runner.seq_lens[:batch],
            seq_lens_cpu_upper_bound=runner.optimistic_seq_lens_cpu[:batch],
            num_reqs=batch,
            num_actual_tokens=batch,
            max_query_len=1,
            max_seq_len=CONTEXT + 1,
            block_table_tensor=tables[group],
            slot_mapping=runner.input_batch.block_table[group].slot_mapping.gpu[:batch],
        )
        for group in range(num_groups)
    ]
    rows_of_tokens = runner.req_indices.gpu[:batch]
    records = []
    for state in ("no pruned request", "all pruned"):
        offsets = KVOffsets(num_groups, BLOCK_SIZE, runner.max_num_reqs, device, always_shift=True)
        runner.kv_offsets = offsets
        if state == "all pruned":
            for req_id in req_ids:
                offsets.add(
                    req_id, PrunedKV(tuple(BLOCK_SIZE * (1 + group) for group in range(num_groups)), BLOCK_SIZE)
                )
        orders = [req_ids, req_ids[::-1]]

        def step(order: list[list[str]], moves: bool, offsets: KVOffsets = offsets) -> None:
            if moves:
                order.reverse()
            runner.step_scheduled(output)
            offsets.refresh(order[0])
            runner.inputs_prepared(positions, rows_of_tokens, runner.seq_lens, runner.optimistic_seq_lens_cpu)
            for group in range(num_groups):
                offsets.shift(group, commons[group])

        for moves in (False, True):
            order = list(orders)
            timing = _timing(lambda order=order, moves=moves: step(order, moves), device, steps, repeats)
            records.append(
                {
                    "config": f"batch {batch}, {num_groups} groups",
                    "key": f"{state}, {'moved' if moves else 'steady'}",
                    "batch": batch,
                    "groups": num_groups,
                    "state": state,
                    "rows": "moved" if moves else "steady",
                    "plugin_us": timing.median_us,
                    "plugin_range_us": [timing.low_us, timing.high_us],
                    "vllm_us": vllm_time.median_us,
                    "vllm_range_us": [vllm_time.low_us, vllm_time.high_us],
                    "share": timing.median_us / vllm_time.median_us,
                    "vllm_without_slot_mapping_us": host_us,
                    "share_without_slot_mapping": timing.median_us / host_us,
                    "plugin": str(timing),
                    "vllm": str(vllm_time),
                }
            )
    return records


def _write_model(directory: Path) -> str:
    from transformers import LlamaConfig

    LlamaConfig(
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=10,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=MAX_MODEL_LEN,
    ).save_pretrained(directory)
    return str(directory)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine.step_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--json", type=Path, help="write the records to this JSON file")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = None
    if args.json:
        settings = {"batches": args.batches, "groups": args.groups, "repeats": args.repeats, "steps": args.steps}
        results = ResultsFile(args.json, "step_overhead", settings, {"device": device.type}, resume=False)
    with tempfile.TemporaryDirectory() as model_dir:
        new_runner = _runner_factory(_write_model(Path(model_dir)), max(args.batches), device)
        print(
            f"Host time per decode step on {device.type}, us: median [min, max] of {args.repeats} x {args.steps} steps"
        )
        print(
            f"{'batch':>5} {'groups':>6}  {'state':<18} {'rows':<6} {'plugin':>26} {'vLLM _prepare_inputs':>26} "
            f"{'share':>7} {'vLLM w/o slot mapping':>21} {'share':>7}"
        )
        for batch in args.batches:
            for num_groups in args.groups:
                for record in measure(new_runner(), batch, num_groups, device, args.steps, args.repeats):
                    flag = "" if record["share_without_slot_mapping"] <= TARGET else "  > 5%"
                    print(
                        f"{batch:>5} {num_groups:>6}  {record['state']:<18} {record['rows']:<6} "
                        f"{record['plugin']:>26} {record['vllm']:>26} {100 * record['share']:6.1f}% "
                        f"{record['vllm_without_slot_mapping_us']:21.1f} "
                        f"{100 * record['share_without_slot_mapping']:6.1f}%{flag}"
                    )
                    if results is not None:
                        results.add(record)
    if results is not None:
        results.finish()


if __name__ == "__main__":
    main()
