"""A pruning engine with a vLLM KV connector: the connector's `kv_transfer_params` and the report arrive together."""

from __future__ import annotations

import math
from typing import Any

import pytest
from vllm import LLM
from vllm.config import KVTransferConfig
from vllm.distributed.kv_transfer.kv_connector.v1.example_connector import ExampleConnector

from asl_vllm.budget import tail_offset
from asl_vllm.report_key import REPORT_KEY
from tests.engine.helpers import add_request, block_size, blocks_held, free_blocks, greedy, haystack_tokens

pytestmark = pytest.mark.slow

BUDGET = 256
NUM_TOKENS = 1500


class ParamsExampleConnector(ExampleConnector):
    """vLLM's example (shared-storage) connector, returning params when a request finishes as P/D connectors do."""

    def request_finished(self, request: Any, block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        return False, {"connector": "example", "request_id": request.request_id}


@pytest.fixture(scope="module")
def connector_engine(model_path, tmp_path_factory):
    """The engine core runs in this process (tests/conftest.py), so this module is the connector's module."""
    transfer = KVTransferConfig(
        kv_connector=ParamsExampleConnector.__name__,
        kv_connector_module_path=__name__,
        kv_role="kv_both",
        kv_connector_extra_config={"shared_storage_path": str(tmp_path_factory.mktemp("kv-store"))},
    )
    llm = LLM(
        model=model_path,
        max_model_len=8192,
        enforce_eager=True,
        seed=0,
        kv_pruner="asl",
        kv_budget=BUDGET,
        kv_transfer_config=transfer,
    )
    yield llm
    llm.llm_engine.engine_core.shutdown()


def test_connector_params_and_report_arrive_together_and_blocks_are_freed(connector_engine):
    llm = connector_engine
    engine = llm.llm_engine
    bs = block_size(llm)
    start_free = free_blocks(llm)
    add_request(llm, "with-connector", haystack_tokens(llm, NUM_TOKENS), greedy(4))
    (first,) = engine.step()  # the whole prefill runs in one step
    offset = tail_offset(NUM_TOKENS, BUDGET, bs)
    assert offset > 0
    assert blocks_held(llm, "with-connector") == math.ceil(NUM_TOKENS / bs) - offset // bs
    outputs = [first]
    while engine.has_unfinished_requests():
        outputs.extend(engine.step())
    assert free_blocks(llm) == start_free

    last = outputs[-1]
    assert last.finished
    report = last.kv_transfer_params[REPORT_KEY]
    assert report["pruned"] is True and report["freed_blocks"] == offset // bs
    assert report["kept_tokens"] == NUM_TOKENS - offset
    assert last.kv_transfer_params["connector"] == "example"
    assert last.kv_transfer_params["request_id"].startswith("with-connector")
    assert first.kv_transfer_params == {REPORT_KEY: report}
