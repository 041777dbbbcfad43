"""Shared fixtures: the embedded model and vLLM engines, started once per session.

Engines run their core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) so
tests can read the scheduler's KV block pool directly.
"""

from __future__ import annotations

import os

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
# Triton kernels run in its interpreter on CPU tensors; it must be set before triton is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

import pytest  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`runs_last` tests after all others: in vLLM 0.32 stopping an in-process engine
    (`EngineCore.shutdown`, also what a sharded engine's executor teardown reaches) destroys the
    process-wide model-parallel groups that the session's shared in-process engines still use."""
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)


@pytest.fixture(scope="session")
def model_path() -> str:
    from asl_vllm.embedded_model import materialize

    return str(materialize())


@pytest.fixture(scope="session")
def tokenizer(model_path):
    """The embedded model's tokenizer (no engine): prompt lengths are counted in its tokens."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


@pytest.fixture(scope="session")
def engines(model_path):
    """`engines(**engine_kwargs)` -> one shared `vllm.LLM` per distinct setting."""
    from vllm import LLM

    started: dict[tuple, LLM] = {}

    def get(**kwargs) -> LLM:
        key = tuple(sorted(kwargs.items()))
        if key not in started:
            settings = {"max_model_len": 8192, "enforce_eager": True, "seed": 0, **kwargs}
            started[key] = LLM(model=model_path, **settings)
        return started[key]

    yield get
    for llm in started.values():
        llm.llm_engine.engine_core.shutdown()
