"""Every place asl-vllm wraps a vLLM function that has no hook. Pinned: vLLM 0.32.0.

- `EngineArgs.add_cli_args` (vllm/engine/arg_utils.py): add the pruner flags.
  `AsyncEngineArgs.add_cli_args` loads general plugins before calling it, so
  `vllm serve --help` lists them.
- `EngineArgs.from_cli_args`: it copies only dataclass fields; carry the pruner
  flags into `additional_config["kv_pruner"]` and fail fast on bad values
  (`PrunerConfigError`).
- `ServeSubcommand.cmd` (vllm/entrypoints/cli/serve.py), the `vllm serve` command:
  end on a `PrunerConfigError` with its one line, as argparse's errors do; wrapped
  by `asl_vllm_startup` as soon as that module is imported.
- `EngineArgs.__init__` / `AsyncEngineArgs.__init__` (dataclass-generated):
  accept the same settings as keyword arguments, so `LLM(model, kv_pruner="asl")`
  works.
- `EngineArgs.create_engine_config`: switch on the engine settings a pruner
  needs and resolve the config against the model depth.
- `InputProcessor._build_logits_processors_params_validator`
  (vllm/v1/engine/input_processor.py): the frontend's per-request check; add the
  pruner settings' check against this engine's config (`request_validation`).
- `IterationStats.update_from_output` (vllm/v1/metrics/stats.py): stat loggers get
  no per-request engine output, so keep the decision reports of the step's new
  requests (`kv_transfer_params["kv_pruner"]`) on the step's `IterationStats`
  for `asl_vllm.metrics.PrunerPrometheusStatLogger`.
- `OpenAIServingCompletion.completion_stream_generator` and
  `OpenAIServingChat.chat_completion_stream_generator`
  (vllm/entrypoints/openai/{completion,chat_completion}/serving.py): they drop
  `RequestOutput.kv_transfer_params`; put it, with the report, on the chunk that
  finishes each choice (`asl_vllm.stream_reports`). Installed by the first
  `create_engine_config` of a pruning engine (every API server process runs one),
  not by `apply`: the start-up hook applies the others while vLLM's entrypoint
  modules may still be importing, and these imports would close that cycle.
Each wrapper is a no-op when no pruner is configured.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import sys
from typing import Any

from asl_vllm.cli_args import add_pruner_args, pruner_config_from_namespace
from asl_vllm.config import ADDITIONAL_CONFIG_KEY, FLAGS, PrunerConfig, PrunerConfigError, from_vllm_config
from asl_vllm.engine.decisions import REPORT_KEY
from asl_vllm.engine_settings import apply_engine_settings, resolve_for_model
from asl_vllm.log import logger
from asl_vllm.request_validation import with_request_check
from asl_vllm.stream_reports import FinalChunkReports

_PATCHED_MARK = "_asl_vllm_patched"
# EngineArgs keyword -> PrunerConfig field, e.g. LLM(..., kv_pruner="asl", asl_tau=0.2).
_KWARGS = {option.lstrip("-").replace("-", "_"): field for field, option in FLAGS.items()}


def apply() -> None:
    """Install the wrappers once per process."""
    from vllm.engine.arg_utils import AsyncEngineArgs, EngineArgs

    if getattr(EngineArgs, _PATCHED_MARK, False):
        return
    _wrap_add_cli_args(EngineArgs)
    _wrap_from_cli_args(EngineArgs)
    _wrap_init(EngineArgs)
    _wrap_init(AsyncEngineArgs)
    _wrap_create_engine_config(EngineArgs)
    _wrap_request_validation()
    _wrap_iteration_stats()
    setattr(EngineArgs, _PATCHED_MARK, True)


def _merge_into_additional_config(engine_args: Any, config: PrunerConfig) -> None:
    if not config.enabled and not (engine_args.additional_config or {}).get(ADDITIONAL_CONFIG_KEY):
        return
    additional = dict(engine_args.additional_config or {})
    additional[ADDITIONAL_CONFIG_KEY] = config.to_dict()
    engine_args.additional_config = additional


def _wrap_add_cli_args(cls: type) -> None:
    original = cls.add_cli_args

    @functools.wraps(original)
    def add_cli_args(parser, *args, **kwargs):
        parser = original(parser, *args, **kwargs)
        return add_pruner_args(parser)

    cls.add_cli_args = staticmethod(add_cli_args)


def _wrap_from_cli_args(cls: type) -> None:
    original = cls.from_cli_args.__func__

    @functools.wraps(original)
    def from_cli_args(klass, args: argparse.Namespace):
        engine_args = original(klass, args)
        config = pruner_config_from_namespace(args)
        if config.enabled:
            resolve_for_model(config, engine_args)
        _merge_into_additional_config(engine_args, config)
        return engine_args

    cls.from_cli_args = classmethod(from_cli_args)


def _wrap_init(cls: type) -> None:
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        raw = {_KWARGS[key]: kwargs.pop(key) for key in list(kwargs) if key in _KWARGS}
        original(self, *args, **kwargs)
        if raw:
            _merge_into_additional_config(self, PrunerConfig.from_dict(raw))

    cls.__init__ = __init__


def _wrap_create_engine_config(cls: type) -> None:
    original = cls.create_engine_config

    @functools.wraps(original)
    def create_engine_config(self, *args, **kwargs):
        config = PrunerConfig.from_dict((self.additional_config or {}).get(ADDITIONAL_CONFIG_KEY))
        if not config.enabled:
            return original(self, *args, **kwargs)
        apply_engine_settings(self, config)
        _wrap_stream_generators()
        vllm_config = original(self, *args, **kwargs)
        hf_config = vllm_config.model_config.hf_config
        resolved = config.resolve(hf_config.num_hidden_layers, getattr(hf_config, "architectures", None))
        vllm_config.additional_config[ADDITIONAL_CONFIG_KEY] = resolved.to_dict()
        logger.info("asl-vllm: KV pruner enabled: %s", resolved)
        return vllm_config

    cls.create_engine_config = create_engine_config


def wrap_serve_command() -> None:
    """`vllm serve` is the CLI entry point that decides how a bad pruner setting ends: one line, exit 1."""
    from vllm.entrypoints.cli.serve import ServeSubcommand

    if getattr(ServeSubcommand, _PATCHED_MARK, False):
        return
    original = ServeSubcommand.cmd

    @functools.wraps(original)
    def cmd(args: argparse.Namespace) -> None:
        try:
            original(args)
        except PrunerConfigError as error:
            sys.exit(f"error: {error}")

    ServeSubcommand.cmd = staticmethod(cmd)
    setattr(ServeSubcommand, _PATCHED_MARK, True)


def _wrap_request_validation() -> None:
    from vllm.v1.engine.input_processor import InputProcessor

    original = InputProcessor._build_logits_processors_params_validator

    @functools.wraps(original)
    def build_validator(self):
        return with_request_check(original(self), from_vllm_config(self.vllm_config))

    InputProcessor._build_logits_processors_params_validator = build_validator


# IterationStats attribute: the reports of requests whose first output is in this step.
ITERATION_REPORTS_ATTR = "kv_pruner_reports"


def _wrap_iteration_stats() -> None:
    from vllm.v1.metrics.stats import IterationStats

    original = IterationStats.update_from_output

    @functools.wraps(original)
    def update_from_output(self, output, engine_core_timestamp, is_prefilling, *args, **kwargs):
        original(self, output, engine_core_timestamp, is_prefilling, *args, **kwargs)
        if is_prefilling and output.kv_transfer_params and REPORT_KEY in output.kv_transfer_params:
            self.__dict__.setdefault(ITERATION_REPORTS_ATTR, []).append(output.kv_transfer_params[REPORT_KEY])

    IterationStats.update_from_output = update_from_output


def _wrap_stream_generators() -> None:
    """Once per process: see the module docstring."""
    from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat
    from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion

    _wrap_stream_generator(OpenAIServingCompletion, "completion_stream_generator", prompt_indexed=True)
    _wrap_stream_generator(OpenAIServingChat, "chat_completion_stream_generator", prompt_indexed=False)


def _wrap_stream_generator(cls: type, name: str, prompt_indexed: bool) -> None:
    """Tap the generator's `result_generator` argument and stamp the chunks it yields."""
    original = getattr(cls, name)
    if getattr(original, _PATCHED_MARK, False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    async def stream_generator(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        reports = FinalChunkReports(choices_per_prompt=(bound.arguments["request"].n or 1) if prompt_indexed else None)
        bound.arguments["result_generator"] = reports.tap(bound.arguments["result_generator"])
        async for event in original(*bound.args, **bound.kwargs):
            yield reports.stamp(event)

    setattr(stream_generator, _PATCHED_MARK, True)
    setattr(cls, name, stream_generator)
