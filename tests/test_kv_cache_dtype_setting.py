"""`--kv-cache-dtype` with a pruner: per-tensor fp8 is read by the kernels, other quantized caches are refused."""

from __future__ import annotations

import pytest
from vllm.engine.arg_utils import EngineArgs

from asl_vllm.config import PrunerConfig, PrunerConfigError
from asl_vllm.engine_settings import check_engine_settings


@pytest.mark.parametrize("dtype", ["auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"])
def test_readable_cache_dtypes_pass(dtype):
    check_engine_settings(EngineArgs(kv_cache_dtype=dtype), PrunerConfig(pruner="asl"))


@pytest.mark.parametrize("dtype", ["fp8_per_token_head", "int8_per_token_head", "nvfp4"])
def test_other_quantized_caches_are_refused_naming_the_flag(dtype):
    with pytest.raises(PrunerConfigError, match="--kv-cache-dtype: cannot be used with --kv-pruner asl"):
        check_engine_settings(EngineArgs(kv_cache_dtype=dtype), PrunerConfig(pruner="asl"))
