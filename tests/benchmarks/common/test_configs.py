import pytest

from benchmarks.common.configs import (
    Config,
    engine_settings,
    group_by_engine,
    parse,
    request_args,
    server_flags,
    with_heads,
)
from benchmarks.common.scheduler import SchedulerSettings


def test_spec_round_trips_through_its_name():
    spec = "asl,B=1024,heads=shared,k=2048,tau=0.5"
    config = parse(spec)
    assert config == Config("asl", budget=1024, heads="shared", select_k=2048, tau=0.5)
    assert config.name == spec
    assert parse("none,eager").name == "none,eager"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("h2o", "unknown pruner"),
        ("asl,heads=shared", "only with a budget"),
        ("snapkv", "needs a budget"),
        ("fastkv,tau=0.5", "tau applies only"),
        ("none,B=1024", "none takes no"),
        ("asl,eager", "only none,eager"),
        ("asl,x=1", "is not one of"),
        ("asl,B=1024,heads=both", "heads must be"),
    ],
)
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        parse(spec)


def test_budgeted_configs_run_in_each_head_mode():
    configs = [parse("none"), parse("asl,B=1024,k=2048"), parse("snapkv,B=1024,heads=shared")]
    names = [c.name for c in with_heads(configs, ["per-kv-head", "shared"])]
    assert names == [
        "none",
        "asl,B=1024,heads=per-kv-head,k=2048",
        "asl,B=1024,heads=shared,k=2048",
        "snapkv,B=1024,heads=shared",
    ]
    assert [c.name for c in with_heads(configs, ["default"])] == [
        "none",
        "asl,B=1024,k=2048",
        "snapkv,B=1024,heads=shared",
    ]


def test_per_request_pruners_share_one_engine_without_a_budget():
    configs = [
        parse(s)
        for s in (
            "none",
            "asl,B=1024,heads=shared",
            "fastkv,k=1024",
            "gemfilter,k=1024",
            "asl-2pass,k=1024,tau=0.5",
            "snapkv,B=2048",
        )
    ]
    groups = group_by_engine(configs)
    assert [(engine, [c.name for c in group]) for engine, group in groups] == [
        ({"kv_pruner": "asl"}, ["none", "asl,B=1024,heads=shared", "fastkv,k=1024", "snapkv,B=2048"]),
        ({"kv_pruner": "gemfilter"}, ["gemfilter,k=1024"]),
        ({"kv_pruner": "asl", "asl_two_pass": True}, ["asl-2pass,k=1024,tau=0.5"]),
    ]
    assert request_args(configs[1], groups[0][0]) == {
        "kv_pruner": "asl",
        "kv_budget": 1024,
        "kv_budget_heads": "shared",
    }
    assert request_args(configs[3], groups[1][0]) == {"asl_select_k": 1024}
    assert request_args(configs[0], groups[0][0]) == {"kv_pruner": "none"}


def test_serving_baseline_is_unmodified_vllm_in_its_default_mode():
    assert engine_settings(parse("none"), baseline_alone=True) == {}
    assert engine_settings(parse("none,eager"), baseline_alone=True) == {"enforce_eager": True}
    assert request_args(parse("none"), {}) == {}
    assert server_flags({"enforce_eager": True}) == ["--enforce-eager"]
    assert server_flags({"kv_pruner": "asl", "asl_two_pass": True}) == ["--kv-pruner", "asl", "--asl-two-pass"]


def test_every_engine_but_vllm_default_gets_the_scheduler_settings_as_flags():
    scheduler = SchedulerSettings(max_num_batched_tokens=1024).engine_args()
    flags = ["--max-num-batched-tokens", "1024", "--enable-chunked-prefill", "--no-async-scheduling"]
    groups = group_by_engine(
        [parse("none"), parse("none,vllm-default"), parse("asl,B=1024")], baseline_alone=True, scheduler=scheduler
    )
    assert [(server_flags(engine), [c.name for c in group]) for engine, group in groups] == [
        (flags, ["none"]),
        ([], ["none,vllm-default"]),
        (["--kv-pruner", "asl", *flags], ["asl,B=1024"]),
    ]
    with pytest.raises(ValueError, match="only none,vllm-default"):
        parse("asl,vllm-default")


def test_engine_budget_starts_the_engine_with_the_budget():
    config = parse("snapkv,B=1024,engine-budget")
    assert config == Config("snapkv", budget=1024, engine_budget=True)
    assert config.name == "snapkv,B=1024,engine-budget"
    groups = group_by_engine([parse("asl,B=1024,engine-budget"), config, parse("asl,B=1024")])
    assert [(engine, [c.name for c in group]) for engine, group in groups] == [
        ({"kv_pruner": "asl", "kv_budget": 1024}, ["asl,B=1024,engine-budget", "snapkv,B=1024,engine-budget"]),
        ({"kv_pruner": "asl"}, ["asl,B=1024"]),
    ]
    assert server_flags(groups[0][0]) == ["--kv-pruner", "asl", "--kv-budget", "1024"]
    with pytest.raises(ValueError, match="engine-budget applies only with a budget"):
        parse("asl,engine-budget")
