"""`vllm serve --kv-pruner asl --kv-budget 256` under concurrent load, client faults and fuzzed request fields.

One server (max_model_len 2048, so the load stays within minutes on two cores)
serves every test here, over loopback only. Block-pool readings come from
vLLM's own /metrics: `vllm:kv_cache_usage_perc` is 1 - free / usable blocks of
the scheduler's pool, refreshed after every engine step, so it reads exactly 0
once every request's blocks are back.
"""

from __future__ import annotations

import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.text_sources import haystack_text
from tests.server.conftest import running_server
from tests.server.http_client import (
    MODEL,
    finished_count,
    hang_up,
    metrics,
    post,
    stream_events,
    wait_until_idle,
)

pytestmark = pytest.mark.slow

MAX_MODEL_LEN = 2048
SERVER_BUDGET = 256
MAX_TOKENS = 8
NUM_REQUESTS = 200
CONCURRENCY = 16
# Per 20 requests: mostly short prompts, a few past the budget (pruned), and one long prompt that
# grows round by round to the length limit (prefill on two CPU cores bounds how many long ones fit).
SHORT_LENGTHS = (1, 2, 3, 5, 8, 12, 16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 200, 300, 600)
LONG_LENGTHS = (700, 1100, 1500, MAX_MODEL_LEN - MAX_TOKENS)
# Every pruner, and a tighter budget / tau / select-k, as per-request `vllm_xargs`.
OVERRIDES = (
    None,
    {"kv_pruner": "snapkv"},
    {"kv_pruner": "fastkv"},
    {"kv_pruner": "none"},
    {"kv_budget": 128, "asl_tau": 0.6, "asl_select_k": 384},
)
# (endpoint, streamed)
KINDS = (
    ("/v1/completions", False),
    ("/v1/completions", True),
    ("/v1/chat/completions", False),
    ("/v1/chat/completions", True),
)
# Chat prompts carry the chat template on top of their text.
CHAT_TEMPLATE_ROOM = 64
# With --enable-log-requests, vLLM's frontend logs every request it aborts, e.g. after the client hung up.
ABORTED = r"Aborted request\(s\)"


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("load") / "vllm-serve.log"
    args = ("--kv-pruner", "asl", "--kv-budget", str(SERVER_BUDGET), "--max-num-seqs", str(CONCURRENCY))
    args += ("--enable-log-requests",)  # so that aborts are logged
    with running_server(model_path, *args, log_path=log_path, max_model_len=MAX_MODEL_LEN) as url:
        yield url, log_path


def prompt_ids(tokenizer: Any, index: int, length: int) -> list[int]:
    """Exactly `length` tokens, starting with the request's own words."""
    salt = tokenizer.encode(f"Request {index}: ", add_special_tokens=False)
    filler = haystack_text("noise", length)
    return (salt + tokenizer.encode(filler, add_special_tokens=False))[:length]


def load_request(tokenizer: Any, index: int) -> tuple[str, bool, dict[str, Any], int | None]:
    """Request `index` of the load: (path, streamed, body, expected prompt tokens or None for chat)."""
    rotation, slot = divmod(index, len(SHORT_LENGTHS) + 1)
    length = SHORT_LENGTHS[slot] if slot < len(SHORT_LENGTHS) else LONG_LENGTHS[rotation % len(LONG_LENGTHS)]
    path, streamed = KINDS[(index + rotation) % len(KINDS)]
    body: dict[str, Any] = {"model": MODEL, "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True}
    overrides = OVERRIDES[(index + rotation) % len(OVERRIDES)]
    if overrides is not None:
        body["vllm_xargs"] = overrides
    if streamed:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    if path == "/v1/completions":
        body["prompt"] = prompt_ids(tokenizer, index, length)
        return path, streamed, body, length
    text_length = max(1, min(length, MAX_MODEL_LEN - MAX_TOKENS - CHAT_TEMPLATE_ROOM))
    body["messages"] = [{"role": "user", "content": tokenizer.decode(prompt_ids(tokenizer, index, text_length))}]
    return path, streamed, body, None


def answer_shape(url: str, path: str, streamed: bool, body: dict[str, Any]) -> tuple[int, str | None, dict, str]:
    """(status, finish_reason, usage, text) of one request, streamed or not."""
    if not streamed:
        reply = post(url, path, body)
        if reply.status_code != 200:
            return reply.status_code, None, {}, reply.text
        choice = reply.json()["choices"][0]
        text = choice["text"] if "text" in choice else choice["message"]["content"]
        return 200, choice["finish_reason"], reply.json()["usage"], text
    status, events = stream_events(url, path, body)
    if status != 200 or events[-1] != "[DONE]":
        return status, None, {}, str(events[-3:])
    chunks = [event for event in events[:-1] if event["choices"]]
    finish = [chunk["choices"][0]["finish_reason"] for chunk in chunks if chunk["choices"][0]["finish_reason"]]
    text = "".join(
        chunk["choices"][0].get("text") or chunk["choices"][0].get("delta", {}).get("content") or "" for chunk in chunks
    )
    usage = next((event["usage"] for event in reversed(events[:-1]) if event.get("usage")), {})
    return 200, finish[-1] if finish else None, usage, text


def test_load_completes_every_request_and_returns_every_block(server, tokenizer):
    url, log_path = server
    before = wait_until_idle(url)
    assert before["vllm:kv_cache_usage_perc"] == 0.0
    plan = [load_request(tokenizer, index) for index in range(NUM_REQUESTS)]
    peak_usage = [0.0]
    done = threading.Event()

    def watch_pool() -> None:
        while not done.wait(1.0):
            peak_usage[0] = max(peak_usage[0], metrics(url)["vllm:kv_cache_usage_perc"])

    watcher = threading.Thread(target=watch_pool)
    watcher.start()
    try:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            answers = list(pool.map(lambda item: answer_shape(url, *item[:3]), plan))
    finally:
        done.set()
        watcher.join()
    for (path, streamed, _, prompt_tokens), (status, finish_reason, usage, text) in zip(plan, answers, strict=True):
        where = f"{path} streamed={streamed} prompt_tokens={prompt_tokens}"
        assert status == 200, f"{where}: {text}"
        assert finish_reason == "length", where
        assert usage["completion_tokens"] == MAX_TOKENS, where
        assert usage["prompt_tokens"] > 0 and prompt_tokens in (None, usage["prompt_tokens"]), where
        assert isinstance(text, str) and text, where
    after = wait_until_idle(url)
    assert peak_usage[0] > 0.0, "the pool reading never moved: it does not watch the load"
    assert after["vllm:kv_cache_usage_perc"] == 0.0, "blocks leaked"
    assert after["vllm:num_requests_running"] == 0
    finished = after["vllm:request_success_total"] - before["vllm:request_success_total"]
    assert finished == NUM_REQUESTS
    log = log_path.read_text()
    pruned_by = set(re.findall(r"kv-pruner request=\S+ pruner=(\w+)", log))
    assert {"asl", "snapkv", "fastkv"} <= pruned_by
    assert re.search(r"freed_blocks=[1-9]", log), "no pruned request gave blocks back"


def _long_body(tokenizer: Any, index: int, length: int, max_tokens: int, **extra: Any) -> dict[str, Any]:
    prompt = prompt_ids(tokenizer, 10_000 + index, length)
    return {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, **extra}


def _assert_next_request_succeeds_on_an_empty_pool(url: str, tokenizer: Any, index: int) -> None:
    """The pool reading is refreshed by engine steps only, so it is read after this request's last step."""
    reply = post(url, "/v1/completions", _long_body(tokenizer, index, 900, 4))
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] == 4
    assert wait_until_idle(url)["vllm:kv_cache_usage_perc"] == 0.0


def _wait_for_log(log_path: Path, pattern: str, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while len(re.findall(pattern, log_path.read_text())) < count:
        assert time.monotonic() < deadline, f"no {count}th {pattern!r} in the server log"
        time.sleep(0.5)


@pytest.mark.parametrize(
    ("case", "streamed", "read_bytes", "after_s"),
    [
        # Hung up during the prefill step of a pruned 2,000-token prompt (the step takes seconds here).
        ("mid-prefill", False, 0, 0.3),
        # Hung up after the first streamed tokens of a long decode.
        ("mid-decode", True, 600, 0.0),
    ],
)
def test_client_hang_up_aborts_and_frees_the_request(server, tokenizer, case, streamed, read_bytes, after_s):
    url, log_path = server
    before = wait_until_idle(url)
    aborted_before = len(re.findall(ABORTED, log_path.read_text()))
    body = _long_body(tokenizer, len(case), 2000, 500, **({"stream": True} if streamed else {}))
    received = hang_up(url, "/v1/completions", body, after_s, read_bytes)
    if streamed:
        assert b"data: " in received  # tokens were flowing when the client left
    _wait_for_log(log_path, ABORTED, aborted_before + 1)
    wait_until_idle(url)
    _assert_next_request_succeeds_on_an_empty_pool(url, tokenizer, len(case))
    # Only the next request ran to its length: the hung-up one was cut short.
    assert finished_count(metrics(url), "length") == finished_count(before, "length") + 1, case


def test_prompt_beyond_max_model_len_gets_400(server, tokenizer):
    url, _ = server
    reply = post(url, "/v1/completions", _long_body(tokenizer, 1, MAX_MODEL_LEN + 10, 4))
    assert reply.status_code == 400, reply.text
    assert str(MAX_MODEL_LEN) in reply.json()["error"]["message"]
    _assert_next_request_succeeds_on_an_empty_pool(url, tokenizer, 1)


def test_max_tokens_past_max_model_len_stops_at_the_limit(server, tokenizer):
    """vLLM 0.32 answers a prompt that fits with the tokens that fit (finish_reason length), not a 400."""
    url, _ = server
    reply = post(url, "/v1/completions", _long_body(tokenizer, 2, MAX_MODEL_LEN - 4, 16))
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["finish_reason"] == "length"
    assert reply.json()["usage"]["completion_tokens"] <= 4
    _assert_next_request_succeeds_on_an_empty_pool(url, tokenizer, 2)


NAN, INF = math.nan, math.inf
# Integers beyond 64 bits are refused by vLLM's own transport check, which names `extra_args`.
TOO_WIDE = (10**30, 2**64, -(2**63) - 1)
BAD_VALUES = {
    "kv_pruner": ["", " asl", "ASL", "h2o", "none\x00", 0, 1.5, NAN, [], ["asl"], None, {}, {"a": 1}],
    "kv_budget": [
        "",
        "512",
        "lots",
        None,
        False,
        0,
        -1,
        31,
        1.5,
        512.0,
        NAN,
        INF,
        -INF,
        1e308,
        2**31,
        4096,
        [],
        [256],
        {},
        {"a": 1},
        *TOO_WIDE,
    ],
    "asl_tau": ["", "0.3", None, 0, -0.0, -1, 1.0000001, 2, NAN, INF, -INF, 10**20, [], [0.3], {}, *TOO_WIDE],
    "asl_select_k": ["", "256", None, True, 0, -5, 8, 100, 1.5, NAN, INF, 2**31, 2**63, [], {}, *TOO_WIDE],
    "kv_budget_heads": ["", "SHARED", "both", "per_kv_head", " shared", None, 0, 1.5, NAN, [], ["shared"], {}],
    "kv_budget_layers": ["", "Shared", "all", "per_layer", None, 0, 1.5, NAN, [], ["shared"], {}],
}


def _assert_400_naming(reply: Any, field: str, value: Any) -> None:
    assert reply.status_code == 400, f"{field}={value!r}: {reply.status_code} {reply.text[:300]}"
    message = reply.json()["error"]["message"]
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        assert "extra_args" in message, message
    else:
        assert f"vllm_xargs.{field}" in message, f"{field}={value!r}: {message[:300]}"


@pytest.mark.parametrize("field", sorted(BAD_VALUES))
def test_bad_request_fields_get_400_naming_the_field(server, field):
    url, _ = server
    for position, value in enumerate(BAD_VALUES[field]):
        path = ("/v1/completions", "/v1/chat/completions")[position % 2]
        prompt = {"prompt": "Hello"} if path == "/v1/completions" else {"messages": [{"role": "user", "content": "Hi"}]}
        body = {"model": MODEL, "max_tokens": 2, "temperature": 0, "vllm_xargs": {field: value}, **prompt}
        _assert_400_naming(post(url, path, body, timeout=60), field, value)
    good = post(url, "/v1/completions", {"model": MODEL, "prompt": "Hello", "max_tokens": 2, "vllm_xargs": {}})
    assert good.status_code == 200, good.text


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(xargs=st.dictionaries(st.sampled_from(sorted(BAD_VALUES)), JSON_VALUES, min_size=1, max_size=4))
def test_random_request_fields_never_get_a_server_error(server, xargs):
    url, _ = server
    reply = post(url, "/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 1, "vllm_xargs": xargs})
    assert reply.status_code in (200, 400), f"{xargs!r}: {reply.status_code} {reply.text[:300]}"
    if reply.status_code == 400:
        message = reply.json()["error"]["message"]
        assert "extra_args" in message or any(f"vllm_xargs.{field}" in message for field in xargs), message


def test_server_still_serves_after_the_faults(server):
    url, _ = server
    reply = post(
        url,
        "/v1/chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Which city is the capital of France?"}],
            "max_tokens": 8,
            "temperature": 0,
        },
    )
    assert reply.status_code == 200, reply.text
    assert "Paris" in reply.json()["choices"][0]["message"]["content"]
    assert wait_until_idle(url)["vllm:kv_cache_usage_perc"] == 0.0
