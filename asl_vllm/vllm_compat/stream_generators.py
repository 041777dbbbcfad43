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

From vLLM 0.33 the generators put the finishing output's `kv_transfer_params`
on each choice's finishing chunk themselves (the completion generator on the
chunk with a `finish_reason`, the chat one once that choice's finish reason is
sent), and `request_outputs` gives the finishing output the report also when
the frontend ends the request: the same chunk carries the same params, so no
wrapper is installed there (`FINAL_CHUNK_PARAMS_SINCE`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator
from typing import Any

from asl_vllm.stream_reports import FinalChunkReports
from asl_vllm.vllm_compat import versions
from asl_vllm.vllm_compat.patching import is_patched, marked

# The first vLLM release whose stream generators send the finishing output's `kv_transfer_params`.
FINAL_CHUNK_PARAMS_SINCE = "0.33.0"


def wrap_stream_generators() -> None:
    """Stamp the report on each choice's finishing chunk where vLLM does not (before 0.33)."""
    if versions.installed_at_least(FINAL_CHUNK_PARAMS_SINCE):
        return
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
