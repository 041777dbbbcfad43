"""The decision report on the last chunk of each choice of a streaming OpenAI reply.

vLLM 0.32's streaming generators (`/v1/completions`, `/v1/chat/completions`)
drop `RequestOutput.kv_transfer_params`, where the engine puts the report
(`asl_vllm.report_key.REPORT_KEY`) beside any KV connector's params.
`FinalChunkReports` watches the outputs a generator reads and adds the same
top-level `kv_transfer_params` a non-streaming reply has to the chunk that
finishes each choice (the one with its `finish_reason`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from asl_vllm.report_key import REPORT_KEY

_DATA_PREFIX = "data: "


class FinalChunkReports:
    """One streaming reply's reports by choice index, stamped on each choice's finishing chunk."""

    def __init__(self, choices_per_prompt: int | None) -> None:
        # None: the generator reads `RequestOutput`s (chat); else `(prompt_idx, RequestOutput)` pairs
        # whose choice indices run over prompts, `choices_per_prompt` each (completions).
        self._choices_per_prompt = choices_per_prompt
        # The latest params holding a report: a reply ended by a stop string (in the API server) has
        # none on its last output, but its first output carried them.
        self._latest: dict[int, dict[str, Any]] = {}
        # Choices whose last output was read and whose finishing chunk is not yet written.
        self._finished: dict[int, dict[str, Any]] = {}

    async def tap(self, results: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Pass the generator's results through, noting their reports."""
        async for item in results:
            self.observe(item)
            yield item

    def observe(self, item: Any) -> None:
        if self._choices_per_prompt is None:
            prompt_idx, output, per_prompt = 0, item, 0
        else:
            (prompt_idx, output), per_prompt = item, self._choices_per_prompt
        params = output.kv_transfer_params
        for choice in output.outputs:
            index = choice.index + prompt_idx * per_prompt
            if params and REPORT_KEY in params:
                self._latest[index] = params
            if choice.finish_reason is not None and index in self._latest:
                self._finished[index] = self._latest.pop(index)

    def stamp(self, event: str) -> str:
        """The SSE event, with `kv_transfer_params` added when it finishes a choice that has a report."""
        if not self._finished or not event.startswith(_DATA_PREFIX + "{"):
            return event
        chunk = json.loads(event.removeprefix(_DATA_PREFIX))
        choices = chunk.get("choices") or []
        if len(choices) != 1 or choices[0].get("finish_reason") is None:
            return event
        params = self._finished.pop(choices[0].get("index"), None)
        if params is None:
            return event
        chunk["kv_transfer_params"] = params
        return f"{_DATA_PREFIX}{json.dumps(chunk, ensure_ascii=False, separators=(',', ':'))}\n\n"
