"""Which streaming chunk gets the report: the one finishing each choice, and no other."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from asl_vllm.report_key import REPORT_KEY
from asl_vllm.stream_reports import FinalChunkReports

REPORT = {"pruner": "asl", "pruned": True}


def output(*choices: tuple[int, str | None], params: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        kv_transfer_params=params,
        outputs=[SimpleNamespace(index=index, finish_reason=finish) for index, finish in choices],
    )


def event(index: int, finish_reason: str | None) -> str:
    chunk = {"id": "cmpl-1", "choices": [{"index": index, "text": "é", "finish_reason": finish_reason}]}
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


def stamped(event_text: str) -> dict | None:
    return json.loads(event_text.removeprefix("data: ")).get("kv_transfer_params")


def test_only_the_finishing_chunk_of_each_choice_is_stamped_and_a_connectors_params_stay():
    params = {"connector": "x", REPORT_KEY: REPORT}
    reports = FinalChunkReports(choices_per_prompt=2)
    reports.observe((1, output((0, None), params={REPORT_KEY: REPORT})))
    assert stamped(reports.stamp(event(2, None))) is None
    reports.observe((1, output((0, "length"), params=params)))
    assert reports.stamp("data: [DONE]\n\n") == "data: [DONE]\n\n"
    assert reports.stamp(event(0, "length")) == event(0, "length")  # another prompt's choice
    assert stamped(reports.stamp(event(2, "length"))) == params
    assert stamped(reports.stamp(event(2, "length"))) is None  # stamped once


def test_a_choice_ended_in_the_api_server_gets_its_first_outputs_report():
    reports = FinalChunkReports(choices_per_prompt=None)
    reports.observe(output((0, None), params={REPORT_KEY: REPORT}))
    reports.observe(output((0, "stop")))  # a stop string: the engine's last output never came
    assert stamped(reports.stamp(event(0, "stop"))) == {REPORT_KEY: REPORT}


def test_replies_without_a_report_pass_through_untouched():
    reports = FinalChunkReports(choices_per_prompt=None)
    reports.observe(output((0, "length"), params={"connector": "x"}))
    assert reports.stamp(event(0, "length")) == event(0, "length")


def test_tap_passes_results_through_in_order():
    reports = FinalChunkReports(choices_per_prompt=None)
    results = [output((0, None), params={REPORT_KEY: REPORT}), output((0, "length"))]

    async def source():
        for result in results:
            yield result

    async def collect():
        return [item async for item in reports.tap(source())]

    assert asyncio.run(collect()) == results
    assert stamped(reports.stamp(event(0, "length"))) == {REPORT_KEY: REPORT}
