"""Every place asl-vllm relies on a vLLM internal, and nothing else. Supported: `versions`.

An internal is what vLLM does not offer plugins: a private method or attribute
overridden or read, the state a vLLM object keeps for itself read even where
its name looks public (a runner's persistent batch, a scheduler's queues, a
layer's cache), a vLLM function replaced by a wrapper, a module attribute
rebound, an environment variable set for vLLM, a private registry call. Each
module below names the vLLM 0.32 file and function it depends on; a new vLLM
version is checked here first. The rest of the plugin uses vLLM's documented
seams (entry points, `--worker-cls` / `--scheduler-cls`, subclasses of
`Scheduler`, workers and model runners through their public methods,
`KVCacheSpecRegistry.register`, stat-logger plugins, public types) and the
hooks and functions these modules define. It reads a vLLM object only through
its public methods, the declared fields of the objects vLLM hands it
(`Request`, `SchedulerOutput`, `CommonAttentionMetadata`, `AttentionGroup`,
`KVCacheConfig`) and the configuration it was built with. No module here
imports `asl_vllm.engine`.

Wrappers of vLLM functions (installed by `apply`, by the start-up hook, or by
the first `create_engine_config` of a pruning engine; each installs once):
- `engine_args`: `EngineArgs.add_cli_args`, `EngineArgs.from_cli_args`,
  `EngineArgs.__init__`, `AsyncEngineArgs.__init__`,
  `EngineArgs.create_engine_config` (vllm/engine/arg_utils.py).
- `serve_command`: `ServeSubcommand.cmd` (vllm/entrypoints/cli/serve.py).
- `request_validator`: `InputProcessor._build_logits_processors_params_validator`
  (vllm/v1/engine/input_processor.py).
- `iteration_stats`: `IterationStats.update_from_output` (vllm/v1/metrics/stats.py),
  and the attribute it adds to `IterationStats`.
- `stream_generators`: `OpenAIServingCompletion.completion_stream_generator`,
  `OpenAIServingChat.chat_completion_stream_generator`
  (vllm/entrypoints/openai/{completion,chat_completion}/serving.py).
- `cpu_attention_isa`: `_get_attn_isa` (vllm/v1/attention/backends/cpu_attn.py).
- `request_outputs`: `RequestState.make_request_output`
  (vllm/v1/engine/output_processor.py), and the attribute it adds to `RequestState`.

Private methods overridden, each behind a named hook:
- `scheduler.SchedulerHooks`: `Scheduler._mamba_block_aligned_split` (with the
  attribute `need_mamba_block_aligned_split`), `Scheduler._free_request` and
  `Scheduler._preempt_request` (vllm/v1/core/sched/scheduler.py); it also wraps `allocate_slots` on its own
  `KVCacheManager` instance, relying on `Scheduler.schedule` preempting when that
  returns None for a running request.
- `model_runner.RunnerHooks`: `GPUModelRunner._update_states` (reading the
  step's `SchedulerOutput` first), `_prepare_inputs`
  (reading `positions` and `req_indices` after it), `_determine_batch_execution_and_padding`
  and `_model_forward` (vllm/v1/worker/gpu_model_runner.py).
- `attention_group.ShiftedAttentionGroup`: `AttentionGroup._with_kernel_block_table`
  (vllm/v1/worker/utils.py).
- `gpu_worker_hooks.GPUWorkerHooks`: `Worker._make_model_runner` (vllm/v1/worker/gpu_worker.py),
  and reads `Worker.use_v2_model_runner`.
- `kv_cache_managers.BlockFreeingManager`: calls
  `SingleTypeKVCacheManager._remove_blocks_in_range`
  (vllm/v1/core/single_type_kv_cache_manager.py), counting what it freed by
  its `block_pool`'s `get_num_free_blocks` (vllm/v1/core/block_pool.py).

Private state read or written, registry calls, rebinding, environment:
- `kv_cache_managers`: `KVCacheSpecRegistry._ensure_registered`
  (vllm/v1/kv_cache_spec_registry.py); `KVCacheManager.coordinator.single_type_managers`
  (vllm/v1/core/kv_cache_manager.py, kv_cache_coordinator.py).
- `cpu_worker_runner.building_cpu_runner`: rebinds `vllm.v1.worker.cpu_worker.CPUModelRunner`
  while `CPUWorker.init_device` runs.
- `forward_context.LayerContexts`: replaces per-layer entries of
  `ForwardContext.attn_metadata` and `.slot_mapping` (vllm/forward_context.py).
- `eager_kernels`: `CustomOp._forward_method` (vllm/model_executor/custom_op.py);
  an IR provider registered on `vllm.ir.ops.rms_norm` / `fused_add_rms_norm` at
  import, and their `set_priority` (vllm/ir/).
- `attention_layer`: reads `Attention._k_scale_float`, `kv_cache`, `layer_name`,
  `num_heads`, `num_kv_heads`, `head_size`, `kv_cache_dtype`, `attn_backend`
  and `impl` (its `scale`), and writes the cache through `impl.do_kv_cache_update`
  (vllm/model_executor/layers/attention/attention.py, vllm/v1/attention/backends/).
- `model_runner`: reads and replaces `GPUModelRunner.attn_groups`.
- `input_batch`: reads `GPUModelRunner.input_batch` (`InputBatch.req_ids`,
  `num_reqs`, `num_computed_tokens_cpu(_tensor)`, `num_prompt_tokens_cpu_tensor`,
  `block_table[group].get_device_tensor`), `GPUModelRunner.query_start_loc` and
  `GPUModelRunner.requests[...].block_ids` (vllm/v1/worker/gpu_model_runner.py,
  gpu_input_batch.py, block_table.py).
- `attention_metadata`: builds `CommonAttentionMetadata` by its fields and
  clears its private `_num_computed_tokens_cache` when re-pointing one
  (vllm/v1/attention/backend.py).
- `scheduler_state`: reads `Scheduler.requests`, `running` and
  `kv_cache_manager.usage` (vllm/v1/core/sched/scheduler.py, kv_cache_manager.py).
- `decoder_model`: reads a Llama-family model's `model`, its `layers`, `norm`
  and `embed_input_ids` (vllm/model_executor/models/llama.py, qwen2.py, qwen3.py).
- `stat_logger`: reads `PrometheusStatLogger.per_engine_labelvalues`
  (vllm/v1/metrics/loggers.py).
- `attention_workspace.share_workspace`: calls a metadata builder's
  `_get_workspace_buffer` (FlashInfer, vllm/v1/attention/backends/flashinfer.py).
- `cpu_sampling.discarded_samples_without_generators`: takes seeded requests'
  generators out of `InputBatch.generators` while `GPUModelRunner.sample_tokens`
  runs, reading `discard_request_mask` (vllm/v1/worker/gpu_model_runner.py).
- `environment`: sets `VLLM_USE_V2_MODEL_RUNNER` and (for `asl-vllm-serve`)
  `VLLM_CPU_KVCACHE_SPACE` (vllm/envs.py).

`patching` holds the mark that makes each wrapper install once.

`versions` names the supported vLLM releases (setup.py reads it) and answers
which one is installed, for the modules that adapt to one (`stream_generators`).
`touch_points` lists every internal above as data: module, name, the parameters
relied on, where an attribute is assigned; `check_versions` verifies that list
and the plugin's vLLM imports against a release's sources, read with `ast` from
its wheel (`python -m asl_vllm.vllm_compat.check_versions`).

Outside this package, because it runs at interpreter start before `asl_vllm`
may be imported: the top-level `asl_vllm_startup` answers
`importlib.metadata.version("vllm")` for the `vllm-cpu` distribution (which
`vllm/entrypoints/cli/main.py` asks for) and runs `apply` and
`serve_command.wrap_serve_command` right after their vLLM modules are imported.
"""

from __future__ import annotations


def apply() -> None:
    """Install the wrappers vLLM's engine arguments and frontend need in every process (idempotent)."""
    from asl_vllm.vllm_compat import engine_args, iteration_stats, request_validator

    engine_args.wrap_engine_args()
    request_validator.wrap_request_validator()
    iteration_stats.wrap_iteration_stats()
