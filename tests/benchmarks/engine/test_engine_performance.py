"""`python -m benchmarks.engine.performance`: its configurations and the engines they run on."""

import pytest

from benchmarks.common.configs import group_by_engine, request_args
from benchmarks.common.scheduler import scheduler_of
from benchmarks.engine import performance


def test_default_configs_and_their_engines_share_the_scheduler_settings():
    args, configs = performance.parse_args(["--max-num-batched-tokens", "4096"])
    same = {"max_num_batched_tokens": 4096, "enable_chunked_prefill": True, "async_scheduling": False}
    assert scheduler_of(args).engine_args() == same
    groups = group_by_engine(configs, baseline_alone=True, scheduler=same)
    assert [(engine, [c.name for c in group]) for engine, group in groups] == [
        (same, ["none"]),
        ({}, ["none,vllm-default"]),
        ({"enforce_eager": True, **same}, ["none,eager"]),
        ({"kv_pruner": "asl", **same}, ["asl", "fastkv"]),
        ({"kv_pruner": "asl", "kv_budget": 1024, **same}, ["asl,B=1024,engine-budget", "snapkv,B=1024,engine-budget"]),
        ({"kv_pruner": "gemfilter", **same}, ["gemfilter"]),
        ({"kv_pruner": "asl", "asl_two_pass": True, **same}, ["asl-2pass"]),
    ]
    assert request_args(configs[0], groups[0][0]) == {}
    assert request_args(configs[5], groups[4][0]) == {"kv_pruner": "snapkv", "kv_budget": 1024}


def test_the_baseline_is_always_measured_first():
    _, configs = performance.parse_args(["--configs", "fastkv,k=1024", "asl", "--short-requests", "0"])
    assert [c.name for c in configs] == ["none", "fastkv,k=1024", "asl"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--configs", "h2o"], "unknown pruner"),
        (["--configs", "fastkv"], "--short-requests 0"),
    ],
)
def test_bad_configs_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        performance.parse_args(argv)
    assert message in capsys.readouterr().err
