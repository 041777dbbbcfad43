"""A step's new requests' decision reports reach the step's `IterationStats`, where the stat logger reads them."""

from __future__ import annotations

from asl_vllm.engine.decisions import PruneDecision
from asl_vllm.vllm_compat.iteration_stats import iteration_reports, wrap_iteration_stats

PRUNED = PruneDecision(req_id="r1", pruner="asl", num_prompt_tokens=2500, selection_layer=17).report()
UNSCORED = PruneDecision(req_id="r2", pruner="none", num_prompt_tokens=40).report()


def test_first_outputs_reports_are_kept_on_the_iteration_stats():
    from vllm.v1.engine import EngineCoreOutput
    from vllm.v1.metrics.stats import IterationStats, LoRARequestStates, RequestStateStats

    wrap_iteration_stats()
    stats = IterationStats()
    lora_states = LoRARequestStates()

    def update(report, is_prefilling):
        output = EngineCoreOutput(request_id="r", new_token_ids=[1], kv_transfer_params={"kv_pruner": report})
        stats.update_from_output(output, 1.0, is_prefilling, RequestStateStats(arrival_time=0.0), lora_states, None)

    update(PRUNED, True)
    update(UNSCORED, False)  # a later output of a request (its last one carries the report again)
    plain = EngineCoreOutput(request_id="q", new_token_ids=[1])
    stats.update_from_output(plain, 1.0, True, RequestStateStats(), lora_states, None)
    assert iteration_reports(stats) == [PRUNED]
