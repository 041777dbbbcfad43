"""The decisions' ride to the scheduler: a declared field of the step's ModelRunnerOutput.

The real crossing (worker processes to the engine core, through vLLM's
shared-memory message queue) is tested by `test_tensor_parallel.py`; this
checks the object itself: it keeps every field of vLLM's output, leaves vLLM's
shared empty output alone and comes back from pickle, as the queue sends it.
"""

from __future__ import annotations

import dataclasses
import pickle

import torch
from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput

from asl_vllm.engine.decision_channel import PruningModelRunnerOutput, step_decisions, with_decisions
from asl_vllm.engine.decisions import PruneDecision


def _decision() -> PruneDecision:
    return PruneDecision(
        req_id="r-1",
        pruner="asl",
        num_prompt_tokens=700,
        selection_layer=4,
        selected_tokens=316,
        selected_indices=torch.arange(316),
        layer_offsets=[0, 0, 384],
        layer_groups=[0, 1, 2],
    )


def test_decisions_ride_on_a_copy_with_every_field_of_the_output():
    output = ModelRunnerOutput(req_ids=["r-1"], req_id_to_index={"r-1": 0}, sampled_token_ids=[[7]])
    carried = with_decisions(output, [_decision()])
    assert isinstance(carried, PruningModelRunnerOutput)
    for item in dataclasses.fields(ModelRunnerOutput):
        assert getattr(carried, item.name) is getattr(output, item.name)
    assert [decision.req_id for decision in step_decisions(carried)] == ["r-1"]
    assert step_decisions(output) == []


def test_vllms_shared_empty_output_is_never_written():
    with_decisions(EMPTY_MODEL_RUNNER_OUTPUT, [_decision()])
    assert step_decisions(EMPTY_MODEL_RUNNER_OUTPUT) == []
    assert not hasattr(EMPTY_MODEL_RUNNER_OUTPUT, "kv_pruner_decisions")


def test_decisions_come_back_from_pickle():
    output = ModelRunnerOutput(req_ids=["r-1"], req_id_to_index={"r-1": 0}, sampled_token_ids=[[7]])
    received = pickle.loads(pickle.dumps(with_decisions(output, [_decision()]), protocol=pickle.HIGHEST_PROTOCOL))
    (decision,) = step_decisions(received)
    assert decision.to_dict() == _decision().to_dict()
    assert received.sampled_token_ids == [[7]]
