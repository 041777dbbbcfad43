"""Per-request settings: the server's config is the default and the ceiling; errors name the field."""

from __future__ import annotations

import math

import pytest
from vllm import SamplingParams
from vllm.exceptions import VLLMValidationError

from asl_vllm.config import PrunerConfig, PrunerConfigError
from asl_vllm.request_config import prefill_prune_config, request_config
from asl_vllm.request_validation import with_request_check

SERVER = PrunerConfig(pruner="asl", kv_budget=1024).resolve(30)


def test_no_overrides_keep_the_server_config():
    assert request_config(SERVER, None) is SERVER
    assert request_config(SERVER, {"unrelated": 1}) is SERVER


def test_overrides_apply():
    assert request_config(SERVER, {"kv_pruner": "none"}).pruner == "none"
    assert request_config(SERVER, {"asl_tau": 0.5}).tau == 0.5
    assert request_config(SERVER, {"kv_budget": 512}).kv_budget == 512
    fastkv = request_config(SERVER, {"kv_pruner": "fastkv"}).resolve(30)
    assert fastkv.pruner == "fastkv" and fastkv.fixed_layer == 14
    gemfilter = request_config(SERVER, {"kv_pruner": "gemfilter"}).resolve(30)
    assert gemfilter.pruner == "gemfilter" and gemfilter.fixed_layer == 12
    assert request_config(SERVER, {"asl_two_pass": True}).two_pass
    assert request_config(SERVER, {"asl_two_pass": 1}).two_pass is True  # JSON true through the OpenAI schema
    assert request_config(SERVER, {"asl_two_pass": 0}).two_pass is False
    assert SERVER.budget_heads == "shared"
    assert request_config(SERVER, {"kv_budget_heads": "per-kv-head"}).budget_heads == "per-kv-head"
    assert SERVER.layer_shared_budget
    assert not request_config(SERVER, {"kv_budget_layers": "per-layer"}).layer_shared_budget


def test_switching_pruner_takes_that_pruners_defaults():
    """A fixed layer and two-pass belong to the server's pruner; a request switching away does not inherit them."""
    two_pass_server = PrunerConfig(pruner="asl", two_pass=True).resolve(30)
    assert not request_config(two_pass_server, {"kv_pruner": "gemfilter"}).two_pass
    assert not request_config(two_pass_server, {"asl_two_pass": False}).two_pass
    fastkv_server = PrunerConfig(pruner="fastkv", fixed_layer=20).resolve(30)
    assert request_config(fastkv_server, {"kv_pruner": "gemfilter"}).resolve(30).fixed_layer == 12
    assert request_config(fastkv_server, {"asl_select_k": 1024}).fixed_layer == 20


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"kv_budget": 4096}, "kv_budget"),
        ({"kv_budget": None}, "kv_budget"),
        ({"kv_budget": "1k"}, "kv_budget"),
        ({"kv_budget": 2.5}, "kv_budget"),
        ({"kv_pruner": "h2o"}, "kv_pruner"),
        ({"kv_pruner": ""}, "kv_pruner"),
        ({"asl_tau": -1}, "asl_tau"),
        ({"asl_tau": math.inf}, "asl_tau"),
        ({"asl_tau": "0.3"}, "asl_tau"),
        ({"asl_select_k": 16}, "asl_select_k"),
        ({"asl_select_k": 512}, "asl_select_k"),  # below the server's budget, which it did not set
        ({"asl_select_k": 10**9, "kv_budget": 10**9}, "kv_budget"),
        ({"asl_select_k": 2**63}, "asl_select_k"),
        ({"asl_two_pass": "yes"}, "asl_two_pass"),
        ({"asl_two_pass": 2}, "asl_two_pass"),
        ({"asl_two_pass": 1.0}, "asl_two_pass"),
        ({"asl_two_pass": None}, "asl_two_pass"),
        ({"kv_pruner": "fastkv", "asl_two_pass": True}, "asl_two_pass"),
        ({"kv_pruner": "gemfilter", "kv_budget": 2048, "asl_select_k": 1024}, "kv_budget"),
        ({"kv_budget_heads": "both"}, "kv_budget_heads"),
        ({"kv_budget_heads": "SHARED"}, "kv_budget_heads"),
        ({"kv_budget_heads": None}, "kv_budget_heads"),
        ({"kv_budget_heads": 1}, "kv_budget_heads"),
        ({"kv_budget_layers": "all"}, "kv_budget_layers"),
        ({"kv_budget_layers": None}, "kv_budget_layers"),
        ({"kv_pruner": "pyramidkv", "kv_budget_layers": "shared"}, "kv_budget_layers"),
    ],
)
def test_bad_overrides_name_the_request_field(extra, field):
    with pytest.raises(PrunerConfigError) as error:
        request_config(SERVER, extra)
    assert error.value.flag == field


def test_overrides_need_a_pruning_server():
    with pytest.raises(PrunerConfigError, match="needs a server started with --kv-pruner"):
        request_config(PrunerConfig(), {"kv_pruner": "asl"})


def test_prefill_prune_config_thresholds():
    params = SamplingParams(max_tokens=1)
    assert prefill_prune_config(SERVER, params, 1000, 30) is None  # under the budget
    assert prefill_prune_config(SERVER, params, 5000, 30) == SERVER
    assert prefill_prune_config(SERVER, SamplingParams(max_tokens=1, prompt_logprobs=1), 5000, 30) is None
    off = SamplingParams(max_tokens=1, extra_args={"kv_pruner": "none"})
    assert prefill_prune_config(SERVER, off, 5000, 30) is None


def test_validator_checks_requests_against_the_engine_it_was_built_for():
    validate = with_request_check(lambda params: None, SERVER)
    validate(SamplingParams(extra_args={"kv_pruner": "snapkv"}))
    with pytest.raises(
        VLLMValidationError, match=r"vllm_xargs\.kv_budget: must be <= the server's --kv-budget \(1024\)"
    ):
        validate(SamplingParams(extra_args={"kv_budget": 2000}))
    with pytest.raises(VLLMValidationError, match=r"vllm_xargs\.asl_two_pass: must be true or false"):
        validate(SamplingParams(extra_args={"asl_two_pass": "true"}))
    # Another engine's frontend checks against its own config.
    with pytest.raises(VLLMValidationError, match=r"vllm_xargs\.kv_pruner: needs a server started with --kv-pruner"):
        with_request_check(lambda params: None, PrunerConfig())(SamplingParams(extra_args={"kv_pruner": "snapkv"}))


def test_validator_runs_vllm_s_own_check_first():
    def vllm_check(params):
        raise VLLMValidationError("vllm's own")

    with pytest.raises(VLLMValidationError, match="vllm's own"):
        with_request_check(vllm_check, SERVER)(SamplingParams(extra_args={"kv_budget": 4096}))


@pytest.mark.parametrize("value", [[], {}, 3])
def test_a_pruner_that_is_not_a_name_is_refused_naming_the_field(value):
    server = PrunerConfig(pruner="asl").validate()
    with pytest.raises(PrunerConfigError, match=r"^kv_pruner: unknown pruner"):
        request_config(server, {"kv_pruner": value})


def test_auto_budget_per_request_where_the_server_has_no_fixed_budget():
    unbudgeted = PrunerConfig(pruner="asl").resolve(30)
    auto = request_config(unbudgeted, {"kv_budget": "auto"})
    assert auto.budget_auto and auto.budget_min == 1024
    with pytest.raises(PrunerConfigError, match="may not lift the server's --kv-budget") as error:
        request_config(SERVER, {"kv_budget": "auto"})
    assert error.value.flag == "kv_budget"


def test_a_request_may_fix_its_own_budget_on_an_auto_server():
    auto_server = PrunerConfig(pruner="asl", kv_budget="auto", kv_budget_min=512, kv_budget_auto_low=0.2).resolve(30)
    fixed = request_config(auto_server, {"kv_budget": 800})
    assert fixed.kv_budget == 800 and not fixed.budget_auto and fixed.kv_budget_min is None
    with pytest.raises(PrunerConfigError, match="may not lift"):
        request_config(auto_server, {"kv_budget": None})


def test_an_auto_prefill_is_scored_when_a_budget_could_ever_cut_it():
    auto_server = PrunerConfig(pruner="asl", kv_budget="auto").resolve(30)
    params = SamplingParams(max_tokens=1)
    assert prefill_prune_config(auto_server, params, 1500, 30) == auto_server  # even if its budget keeps all
    assert prefill_prune_config(auto_server, params, 1024, 30) is None  # within --kv-budget-min: never cut
