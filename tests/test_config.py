"""PrunerConfig: validation names the flag, defaults scale with model depth."""

import math

import pytest

from asl_vllm.config import PrunerConfig, PrunerConfigError


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        ({"pruner": "asl", "tau": 0.0}, "--asl-tau"),
        ({"pruner": "asl", "tau": -0.1}, "--asl-tau"),
        ({"pruner": "asl", "tau": math.nan}, "--asl-tau"),
        ({"pruner": "asl", "tau": 1.5}, "--asl-tau"),
        ({"pruner": "asl", "tau": "0.3"}, "--asl-tau"),
        ({"pruner": "asl", "window": 64, "select_k": 32}, "--asl-window"),
        ({"pruner": "asl", "window": 0}, "--asl-window"),
        ({"pruner": "asl", "pool_kernel": 4}, "--asl-kernel"),
        ({"pruner": "asl", "obs_layers": 1}, "--asl-obs-layers"),
        ({"pruner": "asl", "kv_budget": 16}, "--kv-budget"),
        ({"pruner": "asl", "kv_budget": 4096, "select_k": 2048}, "--kv-budget"),
        ({"pruner": "asl", "kv_budget": True}, "--kv-budget"),
        ({"pruner": "asl", "fixed_layer": 3}, "--fixed-layer"),
        ({"pruner": "snapkv"}, "--kv-budget"),
        ({"pruner": "fastkv", "two_pass": True}, "--asl-two-pass"),
        ({"pruner": "gemfilter", "two_pass": True}, "--asl-two-pass"),
        ({"pruner": "asl", "two_pass": 1}, "--asl-two-pass"),
        ({"pruner": "asl", "two_pass": "yes"}, "--asl-two-pass"),
        ({"pruner": "gemfilter", "kv_budget": 4096, "select_k": 2048}, "--kv-budget"),
        ({"pruner": "gemfilter", "fixed_layer": -1}, "--fixed-layer"),
        ({"pruner": "none", "kv_budget": 1024}, "--kv-budget"),
        ({"pruner": "h2o"}, "--kv-pruner"),
        ({"pruner": "asl", "layer_groups": 0}, "--kv-layer-groups"),
        ({"pruner": "none", "layer_groups": 2}, "--kv-layer-groups"),
        ({"pruner": "asl", "kv_budget": "AUTO"}, "--kv-budget"),
        ({"pruner": "pyramidkv", "kv_budget": "auto"}, "--kv-budget"),
        ({"pruner": "asl", "kv_budget_min": 512}, "--kv-budget-min"),
        ({"pruner": "asl", "kv_budget": 1024, "kv_budget_auto_low": 0.2}, "--kv-budget-auto-low"),
        ({"pruner": "asl", "kv_budget": "auto", "kv_budget_min": 16}, "--kv-budget-min"),
        ({"pruner": "asl", "kv_budget": "auto", "kv_budget_min": 4096}, "--kv-budget-min"),
        ({"pruner": "asl", "kv_budget": "auto", "kv_budget_auto_low": 0.9}, "--kv-budget-auto-low"),
        ({"pruner": "asl", "kv_budget": "auto", "kv_budget_auto_high": 1.5}, "--kv-budget-auto-high"),
        ({"pruner": "asl", "kv_budget": "auto", "kv_budget_auto_low": True}, "--kv-budget-auto-low"),
        ({"pruner": "none", "kv_budget": "auto"}, "--kv-budget"),
        ({"pruner": "asl", "kv_budget": 1024, "budget_layers": "all"}, "--kv-budget-layers"),
        ({"pruner": "asl", "kv_budget": 1024, "budget_layers": True}, "--kv-budget-layers"),
        ({"pruner": "pyramidkv", "kv_budget": 1024, "budget_layers": "shared"}, "--kv-budget-layers"),
        ({"pruner": "none", "budget_layers": "per-layer"}, "--kv-budget-layers"),
    ],
)
def test_invalid_settings_name_their_flag(settings, flag):
    with pytest.raises(PrunerConfigError) as error:
        PrunerConfig.from_dict(settings)
    assert error.value.flag == flag
    assert str(error.value).startswith(f"{flag}: ")


@pytest.mark.parametrize(
    ("settings", "shared"),
    [
        ({"pruner": "asl", "kv_budget": 1024}, True),
        ({"pruner": "snapkv", "kv_budget": 1024}, True),
        ({"pruner": "pyramidkv", "kv_budget": 1024}, False),
        ({"pruner": "asl", "kv_budget": 1024, "budget_layers": "per-layer"}, False),
        ({"pruner": "pyramidkv", "kv_budget": 1024, "budget_layers": "per-layer"}, False),
    ],
)
def test_budget_layers_default_to_shared_where_every_layer_keeps_alike(settings, shared):
    assert PrunerConfig.from_dict(settings).layer_shared_budget is shared


def test_unknown_setting_is_refused():
    with pytest.raises(PrunerConfigError, match="unknown pruner setting"):
        PrunerConfig.from_dict({"pruner": "asl", "budget": 3})


def test_defaults_scale_with_depth():
    asl = PrunerConfig(pruner="asl").resolve(30)
    assert asl.min_layer == 9
    assert PrunerConfig(pruner="asl").resolve(32).min_layer == 10
    assert PrunerConfig(pruner="fastkv").resolve(30).fixed_layer == 14
    assert PrunerConfig(pruner="fastkv").resolve(32).fixed_layer == 15
    assert PrunerConfig(pruner="gemfilter").resolve(30).fixed_layer == 12
    assert PrunerConfig(pruner="gemfilter").resolve(32).fixed_layer == 13


def test_peer_methods_are_available():
    assert PrunerConfig.from_dict({"pruner": "gemfilter", "kv_budget": 1024}).pruner == "gemfilter"
    assert PrunerConfig.from_dict({"pruner": "asl", "two_pass": True}).two_pass


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        ({"pruner": "fastkv", "fixed_layer": 29}, "--fixed-layer"),
        ({"pruner": "fastkv", "fixed_layer": 40}, "--fixed-layer"),
        ({"pruner": "gemfilter", "fixed_layer": 29}, "--fixed-layer"),
        ({"pruner": "asl", "min_layer": 28}, "--asl-min-layer"),
        ({"pruner": "asl", "min_layer": 3}, "--asl-min-layer"),
        ({"pruner": "asl", "layer_groups": 7}, "--kv-layer-groups"),
        ({"pruner": "asl", "layer_groups": 60}, "--kv-layer-groups"),
    ],
)
def test_layers_out_of_range_for_the_model(settings, flag):
    with pytest.raises(PrunerConfigError) as error:
        PrunerConfig.from_dict(settings).resolve(30)
    assert error.value.flag == flag


def test_layer_groups_default_divides_the_depth_and_is_one_with_a_budget():
    assert PrunerConfig(pruner="asl").resolve(30).layer_groups == 10
    assert PrunerConfig(pruner="asl").resolve(32).layer_groups == 8
    assert PrunerConfig(pruner="asl").resolve(28).layer_groups == 7
    assert PrunerConfig(pruner="asl", kv_budget=1024).resolve(30).layer_groups == 1
    assert PrunerConfig(pruner="asl", kv_budget=1024, layer_groups=5).resolve(30).layer_groups == 5
    with pytest.raises(PrunerConfigError, match="valid: 1, 2, 3, 5, 6, 10, 15, 30"):
        PrunerConfig(pruner="asl", layer_groups=4).resolve(30)


def test_unsupported_architecture():
    with pytest.raises(PrunerConfigError, match="not supported"):
        PrunerConfig(pruner="asl").resolve(30, ["GPT2LMHeadModel"])


def test_none_resolves_to_itself():
    assert PrunerConfig().resolve(30) == PrunerConfig()


def test_round_trip_through_a_dict():
    config = PrunerConfig(pruner="asl", kv_budget=1024, tau=0.25).resolve(30)
    assert PrunerConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        ({"pruner": "asl", "select_k": 10**26}, "--asl-select-k"),
        ({"pruner": "snapkv", "kv_budget": 2**31}, "--kv-budget"),
        ({"pruner": "asl", "pool_kernel": 1025}, "--asl-kernel"),
        ({"pruner": "asl", "min_layer": 2**63}, "--asl-min-layer"),
    ],
)
def test_integers_beyond_what_the_kernels_index_are_refused(settings, flag):
    with pytest.raises(PrunerConfigError, match="must be <=") as error:
        PrunerConfig.from_dict(settings)
    assert error.value.flag == flag


def test_too_many_observed_layers_blame_obs_layers():
    with pytest.raises(PrunerConfigError, match="leaves no selection layer") as error:
        PrunerConfig.from_dict({"pruner": "asl", "obs_layers": 29}).resolve(30)
    assert error.value.flag == "--asl-obs-layers"
    assert PrunerConfig.from_dict({"pruner": "asl", "obs_layers": 28}).resolve(30).min_layer == 27


def test_auto_budget_settings_and_their_defaults():
    auto = PrunerConfig.from_dict({"pruner": "snapkv", "kv_budget": "auto"}).resolve(30)
    assert auto.budget_auto and auto.budget_min == 1024
    assert (auto.kv_budget_auto_low, auto.kv_budget_auto_high) == (0.5, 0.9)
    assert auto.layer_groups == 10  # budgets differ per request: groups free what the selection prunes
    assert PrunerConfig.from_dict({"pruner": "asl", "kv_budget": "auto", "select_k": 512}).budget_min == 512
    assert auto.with_budget(2048).kv_budget == 2048 and not auto.with_budget(None).budget_auto
