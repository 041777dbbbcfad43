"""The decision report on the chunk that finishes each choice of a streaming OpenAI reply.

vLLM 0.32: `OpenAIServingCompletion.completion_stream_generator` and
`OpenAIServingChat.chat_completion_stream_generator`
(vllm/entrypoints/openai/{completion,chat_completion}/serving.py). They drop
`RequestOutput.kv_transfer_params`; the wrappers tap their `result_generator`
argument and stamp the chunks they yield (`asl_vllm.stream_reports`). Installed
by the first `create_engine_config` of a pruning engine (every API server
process runs one), not at plugin load: the start-up hook runs while vLLM's
entrypoint modules may still be importing, and these imports would close that
cycle.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator
from typing import Any

from asl_vllm.stream_reports import FinalChunkReports
from asl_vllm.vllm_compat.patching import is_patched, marked


def wrap_stream_generators() -> None:
    from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat
    from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion

    _wrap_stream_generator(OpenAIServingCompletion, "completion_stream_generator", prompt_indexed=True)
    _wrap_stream_generator(OpenAIServingChat, "chat_completion_stream_generator", prompt_indexed=False)


def _wrap_stream_generator(cls: type, name: str, prompt_indexed: bool) -> None:
    original = getattr(cls, name)
    if is_patched(original):
        return
    signature = inspect.signature(original)

    @marked
    @functools.wraps(original)
    async def stream_generator(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[str]:
        bound = signature.bind(self, *args, **kwargs)
        reports = FinalChunkReports(choices_per_prompt=(bound.arguments["request"].n or 1) if prompt_indexed else None)
        bound.arguments["result_generator"] = reports.tap(bound.arguments["result_generator"])
        async for event in original(*bound.args, **bound.kwargs):
            yield reports.stamp(event)

    setattr(cls, name, stream_generator)
