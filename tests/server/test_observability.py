"""What an operator and a client see of the pruner's decisions on `vllm serve --kv-pruner asl`.

The shared server prunes with asl and a 1024-token budget; per-request overrides
(`vllm_xargs`) change the decision, and the change shows in the response's
`kv_transfer_params.kv_pruner` (a streaming reply's on the chunk that finishes
each choice), in the log line and on `/metrics`.
"""

from __future__ import annotations

import re

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.server.http_client import MODEL, stream_events

pytestmark = pytest.mark.slow

# About 2,400 tokens: above the 1024-token budget, a few seconds of prefill.
LONG_PROMPT = "The grass is green. The sky is blue. " * 260 + "The color of the sky is"
BLOCK_SIZE = 128  # vLLM's CPU attention default
SERIES = (
    "vllm:kv_pruner_requests_total",
    "vllm:kv_pruner_selection_layer_count",
    "vllm:kv_pruner_prompt_tokens_total",
    "vllm:kv_pruner_kept_tokens_total",
    "vllm:kv_pruner_kept_fraction_count",
    "vllm:kv_pruner_freed_blocks_total",
    "vllm:kv_pruner_scoring_seconds_count",
)


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every pruner sample on /metrics, keyed by name and labels."""
    text = requests.get(f"{url}/metrics", timeout=30).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("vllm:kv_pruner_")
    }


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    matching = lambda samples: sum(  # noqa: E731
        value for (sample, keys), value in samples.items() if sample == name and set(labels.items()) <= keys
    )
    return matching(after) - matching(before)


def complete(url: str, prompt: str, **xargs) -> tuple[dict, dict]:
    body = {"model": "smollm2", "prompt": prompt, "max_tokens": 4, "temperature": 0}
    if xargs:
        body["vllm_xargs"] = xargs
    reply = requests.post(f"{url}/v1/completions", json=body, timeout=300)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    return data, data["kv_transfer_params"]["kv_pruner"]


def test_pruner_series_are_on_metrics_from_the_start(asl_server):
    url, _ = asl_server
    names = {name for name, _ in scrape(url)}
    assert set(SERIES) <= names


def test_pruned_request_reports_its_decision_in_response_log_and_metrics(asl_server):
    url, log_path = asl_server
    before = scrape(url)
    data, report = complete(url, LONG_PROMPT)
    after = scrape(url)

    prompt_tokens = data["usage"]["prompt_tokens"]
    assert report["pruner"] == "asl" and report["pruned"] is True
    assert report["prompt_tokens"] == prompt_tokens
    # Budget rule: every layer keeps N - D tokens, D the largest block multiple with N - D >= 1024.
    freed = (prompt_tokens - 1024) // BLOCK_SIZE
    assert report["kept_tokens"] == prompt_tokens - freed * BLOCK_SIZE
    assert report["freed_blocks"] == freed > 0
    assert report["scoring_seconds"] > 0

    asl = {"pruner": "asl"}
    assert delta(before, after, "vllm:kv_pruner_requests_total", pruned="true", **asl) == 1
    assert delta(before, after, "vllm:kv_pruner_requests_total", pruned="false", **asl) == 0
    assert delta(before, after, "vllm:kv_pruner_freed_blocks_total", **asl) == report["freed_blocks"]
    assert delta(before, after, "vllm:kv_pruner_prompt_tokens_total", **asl) == prompt_tokens
    assert delta(before, after, "vllm:kv_pruner_kept_tokens_total", **asl) == report["kept_tokens"]
    assert delta(before, after, "vllm:kv_pruner_kept_fraction_count", **asl) == 1
    assert delta(before, after, "vllm:kv_pruner_scoring_seconds_count", **asl) == 1
    assert delta(before, after, "vllm:kv_pruner_scoring_seconds_sum", **asl) == pytest.approx(
        report["scoring_seconds"], abs=1e-5
    )
    selected = report["selection_layer"] is not None
    assert delta(before, after, "vllm:kv_pruner_selection_layer_count", **asl) == int(selected)

    # One INFO line for the request, written once its blocks were freed.
    lines = [line for line in log_path.read_text().splitlines() if f"kv-pruner request={data['id']}" in line]
    assert len(lines) == 1, lines
    assert f"kept_tokens={report['kept_tokens']} " in lines[0]
    assert f"freed_blocks={report['freed_blocks']} " in lines[0]
    layer = "none" if not selected else str(report["selection_layer"])
    assert re.search(rf"pruner=asl two_pass=0 prompt_tokens={prompt_tokens} selection_layer={layer} ", lines[0])


def test_per_request_overrides_change_the_decision(asl_server):
    url, _ = asl_server
    before = scrape(url)
    _, unpruned = complete(url, LONG_PROMPT, kv_pruner="none")
    _, tighter = complete(url, LONG_PROMPT, kv_budget=512)
    after = scrape(url)

    assert unpruned["pruner"] == "none" and unpruned["pruned"] is False
    assert unpruned["kept_tokens"] == unpruned["prompt_tokens"] and unpruned["freed_blocks"] == 0
    assert unpruned["scoring_seconds"] is None and unpruned["selection_layer"] is None
    assert delta(before, after, "vllm:kv_pruner_requests_total", pruner="none", pruned="false") == 1
    assert delta(before, after, "vllm:kv_pruner_freed_blocks_total", pruner="none") == 0

    prompt_tokens = tighter["prompt_tokens"]
    freed = (prompt_tokens - 512) // BLOCK_SIZE
    assert tighter["pruner"] == "asl" and tighter["pruned"] is True
    assert tighter["freed_blocks"] == freed and tighter["kept_tokens"] == prompt_tokens - freed * BLOCK_SIZE
    assert delta(before, after, "vllm:kv_pruner_requests_total", pruner="asl", pruned="true") == 1
    assert delta(before, after, "vllm:kv_pruner_freed_blocks_total", pruner="asl") == freed


def test_reply_ended_by_a_stop_string_carries_the_report(asl_server):
    # The frontend ends such a request itself: the engine's last output, which carries the report, never comes.
    url, _ = asl_server
    body = {"model": MODEL, "prompt": LONG_PROMPT, "temperature": 0, "ignore_eos": True}
    text = requests.post(f"{url}/v1/completions", json={**body, "max_tokens": 8}, timeout=300).json()
    text = text["choices"][0]["text"]
    # The shortest tail of the 8 tokens found nowhere earlier: generation stops there, long before max_tokens.
    stop = next(text[-size:] for size in range(3, len(text) + 1) if text.find(text[-size:]) == len(text) - size)
    reply = requests.post(f"{url}/v1/completions", json={**body, "max_tokens": 64, "stop": [stop]}, timeout=300)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["choices"][0]["finish_reason"] == "stop" and data["usage"]["completion_tokens"] < 64
    report = data["kv_transfer_params"]["kv_pruner"]
    assert report["pruner"] == "asl" and report["pruned"] is True
    assert report["prompt_tokens"] == data["usage"]["prompt_tokens"]


def stream(url: str, path: str, **fields) -> list[dict]:
    """A streaming reply's chunks ending in the usage chunk (`[DONE]` checked and dropped)."""
    body = {"model": MODEL, "max_tokens": 4, "temperature": 0, "stream": True, **fields}
    body["stream_options"] = {"include_usage": True}
    if path == "/v1/completions":
        body["prompt"] = LONG_PROMPT
    else:
        body["messages"] = [{"role": "user", "content": LONG_PROMPT}]
    status, events = stream_events(url, path, body)
    assert status == 200 and events[-1] == "[DONE]", events
    return events[:-1]


def finishing_chunks(chunks: list[dict]) -> list[dict]:
    return [chunk for chunk in chunks if chunk["choices"] and chunk["choices"][0].get("finish_reason")]


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_streaming_reply_carries_the_report_on_its_final_chunk(asl_server, path):
    url, _ = asl_server
    chunks = stream(url, path)
    (final,) = finishing_chunks(chunks)
    assert [chunk for chunk in chunks if "kv_transfer_params" in chunk] == [final]
    report = final["kv_transfer_params"]["kv_pruner"]
    prompt_tokens = chunks[-1]["usage"]["prompt_tokens"]
    assert report["pruner"] == "asl" and report["pruned"] is True
    assert report["prompt_tokens"] == prompt_tokens
    assert report["freed_blocks"] == (prompt_tokens - 1024) // BLOCK_SIZE > 0


def test_streaming_reply_reports_each_choice_on_its_own_final_chunk(asl_server):
    url, _ = asl_server
    chunks = stream(url, "/v1/completions", n=2, temperature=1.0, seed=0)
    finals = finishing_chunks(chunks)
    assert sorted(chunk["choices"][0]["index"] for chunk in finals) == [0, 1]
    assert [chunk for chunk in chunks if "kv_transfer_params" in chunk] == finals
    for chunk in finals:
        assert chunk["kv_transfer_params"]["kv_pruner"]["pruned"] is True
