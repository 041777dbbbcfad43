"""The OpenAI-compatible server started with `vllm serve --kv-pruner asl` answers over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from tests.engine.helpers import greedy

pytestmark = pytest.mark.slow


def test_chat_completion_through_http(asl_server):
    url, _ = asl_server
    reply = requests.post(
        f"{url}/v1/chat/completions",
        json={
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Which city is the capital of France?"}],
            "max_tokens": 16,
            "temperature": 0,
        },
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "Paris" in body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] > 0
    # The decision rides along; the prompt is shorter than the budget, so asl leaves it alone.
    report = body["kv_transfer_params"]["kv_pruner"]
    assert report["pruner"] == "asl" and report["pruned"] is False and report["scoring_seconds"] is None
    assert report["kept_tokens"] == report["prompt_tokens"] == body["usage"]["prompt_tokens"]


def test_long_prompt_is_pruned_and_answered(asl_server):
    url, log_path = asl_server
    filler = "The grass is green. The sky is blue. " * 400
    reply = requests.post(
        f"{url}/v1/completions",
        json={"model": "smollm2", "prompt": filler + "The color of the sky is", "max_tokens": 4, "temperature": 0},
        timeout=300,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["prompt_tokens"] > 3000
    log = log_path.read_text()
    assert "kv-pruner request=" in log and "freed_blocks=" in log


PLAIN_VLLM_SCRIPT = """
import json, sys
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt
if __name__ == "__main__":
    prompt = json.loads(sys.argv[2])
    llm = LLM(model=sys.argv[1], max_model_len=8192, enforce_eager=True, seed=0)
    out = llm.generate([TokensPrompt(prompt_token_ids=prompt)], SamplingParams(temperature=0.0, max_tokens=24))
    print("TOKENS=" + json.dumps(list(out[0].outputs[0].token_ids)))
"""


def test_pruner_none_matches_vllm_without_the_plugin(engines, model_path):
    from tests.engine.helpers import haystack_tokens, run_requests

    llm = engines()
    # Salted: the shared engine's prefix cache must not serve part of this prompt.
    prompt = haystack_tokens(llm, 2500, salt="Report 4711 on plain vLLM. ")
    with_plugin = run_requests(llm, {"plain": prompt}, {"plain": greedy(24)})["plain"]
    env = {**os.environ, "VLLM_PLUGINS": "", "VLLM_CPU_KVCACHE_SPACE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_VLLM_SCRIPT, model_path, json.dumps(prompt)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("TOKENS="))
    assert json.loads(line.removeprefix("TOKENS=")) == with_plugin


@pytest.mark.parametrize(
    ("xargs", "field"),
    [
        ({"kv_budget": 5000}, "kv_budget"),
        ({"kv_budget": "lots"}, "kv_budget"),
        ({"kv_pruner": "h2o"}, "kv_pruner"),
        ({"asl_tau": 0}, "asl_tau"),
        ({"asl_tau": float("nan")}, "asl_tau"),
        ({"asl_select_k": 8}, "asl_select_k"),
        ({"asl_two_pass": "yes"}, "asl_two_pass"),
        ({"kv_pruner": "gemfilter", "asl_two_pass": True}, "asl_two_pass"),
    ],
)
def test_bad_per_request_settings_get_400_and_the_server_keeps_serving(asl_server, xargs, field):
    url, _ = asl_server
    body = {"model": "smollm2", "prompt": "Hello", "max_tokens": 2, "temperature": 0}
    bad = requests.post(
        f"{url}/v1/completions",
        data=json.dumps({**body, "vllm_xargs": xargs}),  # json.dumps writes NaN, as many clients do
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert bad.status_code == 400, bad.text
    assert f"vllm_xargs.{field}" in bad.json()["error"]["message"]
    good = requests.post(f"{url}/v1/completions", json={**body, "vllm_xargs": {"kv_pruner": "snapkv"}}, timeout=60)
    assert good.status_code == 200, good.text
