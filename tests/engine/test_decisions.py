"""A decision's report: what the client and the metrics see of one request."""

from __future__ import annotations

import json

import pytest

from asl_vllm.engine.decisions import PruneDecision


def test_report_of_a_pruned_request():
    decision = PruneDecision(
        req_id="r1",
        pruner="asl",
        num_prompt_tokens=2500,
        selection_layer=17,
        selected_tokens=1100,
        layer_offsets=[1408] * 10 + [1280] * 20,
        scoring_seconds=0.0123456789,
        freed_blocks=10,
    )
    report = decision.report()
    assert report == {
        "pruner": "asl",
        "two_pass": False,
        "pruned": True,
        "selection_layer": 17,
        "prompt_tokens": 2500,
        "kept_tokens": round(2500 - (1408 * 10 + 1280 * 20) / 30),
        "freed_blocks": 10,
        "scoring_seconds": 0.012346,
        "kv_budget": None,
        "kv_budget_auto": False,
        "pool_usage": None,
        "prefill_steps": 1,
        "shrinks": [],
        "preemptions_avoided": 0,
    }
    assert json.loads(json.dumps(report)) == report


def test_report_of_a_request_the_pruner_did_not_score():
    report = PruneDecision(req_id="r2", pruner="none", num_prompt_tokens=40).report()
    assert report == {
        "pruner": "none",
        "two_pass": False,
        "pruned": False,
        "selection_layer": None,
        "prompt_tokens": 40,
        "kept_tokens": 40,
        "freed_blocks": 0,
        "scoring_seconds": None,
        "kv_budget": None,
        "kv_budget_auto": False,
        "pool_usage": None,
        "prefill_steps": 1,
        "shrinks": [],
        "preemptions_avoided": 0,
    }


def test_scored_but_unpruned_request_keeps_every_token():
    decision = PruneDecision(req_id="r3", pruner="asl", num_prompt_tokens=900, layer_offsets=[0] * 30)
    report = decision.report()
    assert not report["pruned"] and report["kept_tokens"] == 900 and report["scoring_seconds"] == 0.0


def test_two_pass_method_and_group_offsets():
    decision = PruneDecision(
        req_id="r4",
        pruner="asl",
        num_prompt_tokens=4000,
        two_pass=True,
        layer_offsets=[0, 0, 2944, 2944, 2944, 2944],
        layer_groups=[0, 0, 1, 1, 2, 2],
    )
    assert decision.report()["pruner"] == "asl" and decision.report()["two_pass"] is True
    assert decision.group_offsets == [0, 2944, 2944]


def test_a_group_whose_layers_read_different_offsets_is_refused():
    """Decode presents each KV cache group with one shifted block table: its layers must agree."""
    decision = PruneDecision(
        req_id="r5",
        pruner="asl",
        num_prompt_tokens=4000,
        layer_offsets=[0, 0, 0, 2944, 2944, 2944],
        layer_groups=[0, 0, 1, 1, 2, 2],
    )
    with pytest.raises(AssertionError, match="KV cache group 1 mixes KV offsets"):
        _ = decision.group_offsets


def test_report_of_an_auto_budget_request_names_its_budget_and_pool_usage():
    decision = PruneDecision(
        req_id="r4", pruner="asl", num_prompt_tokens=6000, layer_offsets=[4864] * 30, kv_budget=1100, budget_auto=True
    )
    decision.pool_usage = 0.7234567
    report = decision.report()
    assert (report["kv_budget"], report["kv_budget_auto"], report["pool_usage"]) == (1100, True, 0.7235)
    assert report["kept_tokens"] == 1136 and report["shrinks"] == [] and report["preemptions_avoided"] == 0
