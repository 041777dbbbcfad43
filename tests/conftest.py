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

import gc  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

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


# In-process engines kept alive at once: each holds ~1.5 GiB (weights and a 1 GiB KV pool), and
# the suite starts more than a 24 GiB CI machine holds beside the sharded engines that run last.
LIVE_ENGINES = 5


class SharedEngines:
    """`engines(**engine_kwargs)` -> one shared `vllm.LLM` per distinct setting, the most recently
    asked `LIVE_ENGINES` kept alive.

    Module fixtures ask once per module, so an engine is released only after every module that
    asked for it has finished (a module asks for at most three). Releasing stops the executor
    only, which frees the worker's model and KV pool: an in-process `EngineCore.shutdown` would
    tear down the distributed state the other engines still use (vLLM 0.32).
    """

    def __init__(self, model_path: str) -> None:
        self.model_path = model_path
        self.live: dict[tuple, Any] = {}

    def __call__(self, **kwargs: Any) -> Any:
        from vllm import LLM

        key = tuple(sorted(kwargs.items()))
        if key in self.live:
            self.live[key] = self.live.pop(key)
            return self.live[key]
        while len(self.live) >= LIVE_ENGINES:
            self.release(next(iter(self.live)))
        settings = {"max_model_len": 8192, "enforce_eager": True, "seed": 0, **kwargs}
        self.live[key] = LLM(model=self.model_path, **settings)
        return self.live[key]

    def release(self, key: tuple) -> None:
        self.live.pop(key).llm_engine.engine_core.engine_core.model_executor.shutdown()
        gc.collect()

    def release_all(self) -> None:
        """Free every shared engine's memory, for tests that start engines of their own."""
        while self.live:
            self.release(next(iter(self.live)))


@pytest.fixture(scope="session")
def engines(model_path) -> Iterator[SharedEngines]:
    shared = SharedEngines(model_path)
    yield shared
    shared.release_all()
