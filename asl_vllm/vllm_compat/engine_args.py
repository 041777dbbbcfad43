"""The pruner's settings as vLLM engine arguments: flags, `LLM(...)` keywords, and the engine config.

vLLM 0.32, `EngineArgs` (vllm/engine/arg_utils.py), which has no hook for a
plugin's own arguments:
- `EngineArgs.add_cli_args`: add the pruner flags. `AsyncEngineArgs.add_cli_args`
  loads general plugins before calling it, so `vllm serve --help` lists them.
- `EngineArgs.from_cli_args`: it copies only dataclass fields; carry the pruner
  flags into `additional_config["kv_pruner"]` and fail fast on bad values
  (`PrunerConfigError`).
- `EngineArgs.__init__` / `AsyncEngineArgs.__init__` (dataclass-generated):
  accept the same settings as keyword arguments, so `LLM(model, kv_pruner="asl")`
  works.
- `EngineArgs.create_engine_config`: switch on the engine settings a pruner
  needs (`asl_vllm.engine_settings`), resolve the config against the model
  depth, and install the frontend wrappers a pruning engine's reports need
  (`stream_generators`, `request_outputs`).
Each wrapper leaves vLLM's behaviour unchanged when no pruner is configured.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

from asl_vllm.cli_args import add_pruner_args, pruner_config_from_namespace
from asl_vllm.config import ADDITIONAL_CONFIG_KEY, PrunerConfig
from asl_vllm.engine_settings import apply_engine_settings, resolve_for_model
from asl_vllm.log import logger
from asl_vllm.settings import FLAGS
from asl_vllm.vllm_compat.patching import is_patched, marked
from asl_vllm.vllm_compat.request_outputs import wrap_request_outputs
from asl_vllm.vllm_compat.stream_generators import wrap_stream_generators

# EngineArgs keyword -> PrunerConfig field, e.g. LLM(..., kv_pruner="asl", asl_tau=0.2).
_KWARGS = {option.lstrip("-").replace("-", "_"): field for field, option in FLAGS.items()}


def wrap_engine_args() -> None:
    from vllm.engine.arg_utils import AsyncEngineArgs, EngineArgs

    _wrap_add_cli_args(EngineArgs)
    _wrap_from_cli_args(EngineArgs)
    _wrap_init(EngineArgs)
    _wrap_init(AsyncEngineArgs)
    _wrap_create_engine_config(EngineArgs)


def _merge_into_additional_config(engine_args: Any, config: PrunerConfig) -> None:
    if not config.enabled and not (engine_args.additional_config or {}).get(ADDITIONAL_CONFIG_KEY):
        return
    additional = dict(engine_args.additional_config or {})
    additional[ADDITIONAL_CONFIG_KEY] = config.to_dict()
    engine_args.additional_config = additional


def _wrap_add_cli_args(cls: type) -> None:
    original = cls.add_cli_args
    if is_patched(original):
        return

    @marked
    @functools.wraps(original)
    def add_cli_args(parser: Any, *args: Any, **kwargs: Any) -> Any:
        parser = original(parser, *args, **kwargs)
        return add_pruner_args(parser)

    cls.add_cli_args = staticmethod(add_cli_args)


def _wrap_from_cli_args(cls: type) -> None:
    if is_patched(cls.from_cli_args):
        return
    original = cls.from_cli_args.__func__

    @marked
    @functools.wraps(original)
    def from_cli_args(klass: type, args: argparse.Namespace) -> Any:
        engine_args = original(klass, args)
        config = pruner_config_from_namespace(args)
        if config.enabled:
            resolve_for_model(config, engine_args)
        _merge_into_additional_config(engine_args, config)
        return engine_args

    cls.from_cli_args = classmethod(from_cli_args)


def _wrap_init(cls: type) -> None:
    original = cls.__init__
    if is_patched(original):
        return

    @marked
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        raw = {_KWARGS[key]: kwargs.pop(key) for key in list(kwargs) if key in _KWARGS}
        original(self, *args, **kwargs)
        if raw:
            _merge_into_additional_config(self, PrunerConfig.from_dict(raw))

    cls.__init__ = __init__


def _wrap_create_engine_config(cls: type) -> None:
    original = cls.create_engine_config
    if is_patched(original):
        return

    @marked
    @functools.wraps(original)
    def create_engine_config(self: Any, *args: Any, **kwargs: Any) -> Any:
        config = PrunerConfig.from_dict((self.additional_config or {}).get(ADDITIONAL_CONFIG_KEY))
        if not config.enabled:
            return original(self, *args, **kwargs)
        apply_engine_settings(self, config)
        wrap_stream_generators()
        wrap_request_outputs()
        vllm_config = original(self, *args, **kwargs)
        hf_config = vllm_config.model_config.hf_config
        resolved = config.resolve(hf_config.num_hidden_layers, getattr(hf_config, "architectures", None))
        vllm_config.additional_config[ADDITIONAL_CONFIG_KEY] = resolved.to_dict()
        logger.info("asl-vllm: KV pruner enabled: %s", resolved)
        return vllm_config

    cls.create_engine_config = create_engine_config
