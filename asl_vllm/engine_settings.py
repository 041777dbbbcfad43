"""The vLLM engine settings a pruner needs, and the ones it cannot work with.

Pruning rewrites a request's KV cache after its prefill step, so anything that
shares or replays that cache is refused when the user asked for it and switched
off (with a notice) when it is only vLLM's default. Everything else stays as
vLLM sets it: torch.compile and CUDA graphs (only a step that prunes a prefill
runs eagerly) and chunked prefill (a prompt to be pruned is scheduled whole).
"""

from __future__ import annotations

from typing import Any

from asl_vllm.config import PrunerConfig, PrunerConfigError
from asl_vllm.scoring.kv_layout import kv_cache_dtype_problem
from asl_vllm.vllm_compat.cpu_attention_isa import unreadable_isa_problem
from asl_vllm.vllm_compat.environment import pin_v1_model_runner

CPU_WORKER = "asl_vllm.engine.cpu_worker.PruningCPUWorker"
GPU_WORKER = "asl_vllm.engine.gpu_worker.PruningGPUWorker"
SCHEDULER = "asl_vllm.engine.scheduler.PruningScheduler"

# EngineArgs field -> (flag, why it conflicts). Refused when explicitly enabled.
_REFUSED_WHEN_ON = {
    "enable_prefix_caching": (
        "--enable-prefix-caching",
        "pruned blocks cannot be shared with other requests",
    ),
    "async_scheduling": (
        "--async-scheduling",
        "blocks are freed from the step's results, which async scheduling overlaps",
    ),
    "enable_dbo": (
        "--enable-dbo",
        "pruned requests' attention metadata is per request row, which micro-batching splits",
    ),
}
# EngineArgs field -> (flag, why it conflicts). Refused above 1; tensor and data parallelism work.
_REFUSED_PARALLELISM = {
    "pipeline_parallel_size": (
        "--pipeline-parallel-size",
        "a pruning prefill shrinks the rows the layers after the selection layer run, and vLLM 0.32 passes every "
        "scheduled row between pipeline stages and returns only the last stage's results to the scheduler "
        "(README: Parallelism)",
    ),
    "decode_context_parallel_size": (
        "--decode-context-parallel-size",
        "it spreads each request's KV cache over ranks token by token, while pruning keeps a request's kept "
        "tokens in block-aligned tail slots of one cache",
    ),
    "prefill_context_parallel_size": (
        "--prefill-context-parallel-size",
        "it splits a prompt's tokens over ranks, while a pruning prefill scores and selects over the whole prompt",
    ),
}
_GROUPS_NEED_HYBRID = (
    "each layer group is a KV cache group of vLLM's hybrid allocator (pass --kv-layer-groups 1 to keep one group)"
)


def check_engine_settings(engine_args: Any, config: PrunerConfig) -> None:
    """Refuse settings the pruner cannot work with; changes nothing."""
    for field, (option, why) in _REFUSED_WHEN_ON.items():
        if getattr(engine_args, field, None) is True:
            raise PrunerConfigError(option, f"cannot be used with --kv-pruner {config.pruner}: {why}")
    if problem := kv_cache_dtype_problem(getattr(engine_args, "kv_cache_dtype", "auto")):
        raise PrunerConfigError("--kv-cache-dtype", f"cannot be used with --kv-pruner {config.pruner}: {problem}")
    if engine_args.speculative_config:
        raise PrunerConfigError(
            "--speculative-config", f"speculative decoding is not supported with --kv-pruner {config.pruner}"
        )
    for field, (option, why) in _REFUSED_PARALLELISM.items():
        if (getattr(engine_args, field, 1) or 1) > 1:
            raise PrunerConfigError(option, f"must be 1 with --kv-pruner {config.pruner}: {why}")
    several_groups = config.layer_groups != 1 and (config.layer_groups is not None or not config.one_group_default)
    if several_groups and engine_args.disable_hybrid_kv_cache_manager is True:
        raise PrunerConfigError(
            "--disable-hybrid-kv-cache-manager",
            f"cannot be used with more than one --kv-layer-groups: {_GROUPS_NEED_HYBRID}",
        )
    if several_groups and _connector_lacks_hybrid_support(engine_args.kv_transfer_config):
        raise PrunerConfigError(
            "--kv-transfer-config",
            "its KV connector does not support vLLM's hybrid allocator (vLLM then turns it off), so it cannot be "
            f"used with more than one --kv-layer-groups: {_GROUPS_NEED_HYBRID}",
        )
    if engine_args.worker_cls not in ("auto", CPU_WORKER, GPU_WORKER):
        raise PrunerConfigError("--worker-cls", "is set by --kv-pruner and cannot be overridden")
    if engine_args.scheduler_cls not in (None, SCHEDULER):
        raise PrunerConfigError("--scheduler-cls", "is set by --kv-pruner and cannot be overridden")


def _connector_lacks_hybrid_support(kv_transfer_config: Any) -> bool:
    """A KV connector coexists with pruning, but one without `SupportsHMA` makes vLLM 0.32 drop the hybrid
    allocator (`VllmConfig.__post_init__`), which layer groups are built on."""
    if kv_transfer_config is None or kv_transfer_config.kv_connector is None:
        return False
    from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory

    return not KVConnectorFactory.supports_hma_config(kv_transfer_config)


def apply_engine_settings(engine_args: Any, config: PrunerConfig) -> None:
    """Refuse conflicting settings, then set the ones the pruner relies on."""
    if not config.enabled:
        return
    check_engine_settings(engine_args, config)
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        # Before any cache is written: the scoring kernels read the x86 ISAs' K/V layouts only.
        model_config = engine_args.create_model_config()
        problem = unreadable_isa_problem(model_config, engine_args.block_size, engine_args.kv_cache_dtype)
        if problem:
            raise PrunerConfigError("--kv-pruner", f"{config.pruner} cannot be used here: {problem}")
        engine_args.worker_cls = CPU_WORKER
    else:
        pin_v1_model_runner()
        engine_args.worker_cls = GPU_WORKER
    engine_args.scheduler_cls = SCHEDULER
    engine_args.enable_prefix_caching = False
    engine_args.async_scheduling = False


def resolve_for_model(config: PrunerConfig, engine_args: Any) -> PrunerConfig:
    """Early, model-aware validation for the CLI; skipped if the config cannot be read here."""
    try:
        from transformers import AutoConfig

        hf_config = AutoConfig.from_pretrained(
            engine_args.model,
            trust_remote_code=bool(engine_args.trust_remote_code),
            revision=engine_args.revision,
        )
    except Exception:  # the engine resolves it again once vLLM has loaded the config
        return config
    resolved = config.resolve(hf_config.num_hidden_layers, getattr(hf_config, "architectures", None))
    check_engine_settings(engine_args, config)
    return resolved
