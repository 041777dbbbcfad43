"""Parallel modes with a pruner: tensor and data parallelism pass, the others are refused naming flag and reason."""

from __future__ import annotations

import pytest
from vllm.engine.arg_utils import EngineArgs

from asl_vllm.config import PrunerConfig, PrunerConfigError
from asl_vllm.engine_settings import check_engine_settings


@pytest.mark.parametrize("pruner", ["asl", "fastkv", "gemfilter", "snapkv"])
@pytest.mark.parametrize(
    "setting", [{"tensor_parallel_size": 2}, {"tensor_parallel_size": 8}, {"data_parallel_size": 2}]
)
def test_tensor_and_data_parallelism_pass(pruner, setting):
    check_engine_settings(EngineArgs(**setting), PrunerConfig(pruner=pruner, kv_budget=512))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"pipeline_parallel_size": 2},
            "--pipeline-parallel-size: must be 1 with --kv-pruner asl: a pruning prefill shrinks the rows",
        ),
        (
            {"decode_context_parallel_size": 2, "tensor_parallel_size": 2},
            "--decode-context-parallel-size: must be 1 with --kv-pruner asl: it spreads each request's KV cache",
        ),
        (
            {"prefill_context_parallel_size": 2},
            "--prefill-context-parallel-size: must be 1 with --kv-pruner asl: it splits a prompt's tokens",
        ),
    ],
)
def test_other_parallel_modes_are_refused_naming_flag_and_reason(setting, message):
    with pytest.raises(PrunerConfigError) as refused:
        check_engine_settings(EngineArgs(**setting), PrunerConfig(pruner="asl"))
    assert str(refused.value).startswith(message)
