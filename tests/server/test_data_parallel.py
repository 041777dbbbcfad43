"""`vllm serve --kv-pruner asl --data-parallel-size 2`: two engine cores, each with its own scheduler and pool.

40 concurrent requests, half pruned (a per-request budget on a 1,500-token
prompt) and half short, all succeed; both engines serve some; the pruner's
series carry vLLM's `engine` label; and once every reply is in, both engines'
pools are empty again (vLLM's `kv_cache_usage_perc` per engine).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import running_server
from tests.server.http_client import MODEL, post

pytestmark = pytest.mark.slow

REQUESTS = 40
LONG_PROMPT = "The grass is green. The sky is blue. The sun is warm. " * 130 + "The color of the sky is"
BUDGET = 512


@pytest.fixture(scope="module")
def data_parallel_server(model_path, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("data-parallel") / "vllm-serve.log"
    # Two engine cores on a small CI machine: vLLM's automatic thread binding wants more cores per engine.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        with running_server(
            model_path, "--kv-pruner", "asl", "--data-parallel-size", "2", log_path=log_path, max_model_len=4096
        ) as url:
            yield url


def _send(url: str, index: int) -> tuple[int, dict]:
    if index % 2:
        body = {"prompt": f"Count from {index} to", "vllm_xargs": {}}
    else:
        body = {"prompt": f"Note {index}. {LONG_PROMPT}", "vllm_xargs": {"kv_budget": BUDGET}}
    reply = post(url, "/v1/completions", {"model": MODEL, "max_tokens": 4, "temperature": 0, **body}, timeout=900)
    return reply.status_code, reply.json()


def _samples(url: str) -> list:
    text = requests.get(f"{url}/metrics", timeout=30).text
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def test_forty_mixed_requests_succeed_on_both_engines_and_both_pools_empty(data_parallel_server):
    url = data_parallel_server
    with ThreadPoolExecutor(REQUESTS) as pool:
        replies = list(pool.map(lambda index: _send(url, index), range(REQUESTS)))
    for index, (status, body) in enumerate(replies):
        assert status == 200, body
        report = body["kv_transfer_params"]["kv_pruner"]
        if index % 2:
            assert report["pruned"] is False, report
        else:
            assert report["pruned"] is True and report["kept_tokens"] < report["prompt_tokens"], report
            assert report["freed_blocks"] > 0, report

    served = {"0": 0.0, "1": 0.0}
    pruned = 0.0
    for sample in _samples(url):
        if sample.name == "vllm:kv_pruner_requests_total":
            served[sample.labels["engine"]] += sample.value
            pruned += sample.value if sample.labels["pruned"] == "true" else 0.0
    assert sum(served.values()) == REQUESTS and pruned == REQUESTS / 2
    assert all(count > 0 for count in served.values()), served

    # Each engine's last step reports its pool after freeing the finished requests' blocks.
    deadline = time.monotonic() + 30
    while True:
        usage = {
            sample.labels["engine"]: sample.value
            for sample in _samples(url)
            if sample.name == "vllm:kv_cache_usage_perc"
        }
        if usage == {"0": 0.0, "1": 0.0} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert usage == {"0": 0.0, "1": 0.0}
