"""The client side of the server benchmarks: streamed completions, waves and bursts of them, /metrics probes.

Everything here talks to one running `vllm serve` over HTTP; what to send and how often is
decided by the serving and pressure benchmarks (performance.py, pressure.py).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.serving.server_process import SERVED_NAME, Server
from harness.chat_prompt import needle_prompt
from harness.text_sources import haystack_text


@dataclass
class Stream:
    ttft_s: float
    tpot_s: float | None
    output_tokens: int
    text: str


@dataclass
class Wave:
    """One wave of concurrent requests: the means over its streams and its output rate."""

    ttft_s: float
    tpot_s: float | None
    tokens_per_s: float


class PromptMaker:
    """Distinct prose prompts of an exact length: a per-request prefix defeats prefix caching."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.count = 0

    def __call__(self, length: int) -> list[int]:
        self.count += 1
        filler = f"Document {self.count}. " + haystack_text("prose", length)
        return needle_prompt(
            self.tokenizer,
            length,
            filler,
            f"The special magic number is: {1000000 + self.count}.",
            0.5,
            "What is the special magic number mentioned in the text above?",
            "The special magic number is",
            at_sentence=True,
        )


async def stream_one(session: Any, url: str, prompt: list[int], max_tokens: int, xargs: dict[str, Any]) -> Stream:
    """One streaming completion; raises RuntimeError on an HTTP error (the body says why)."""
    body: dict[str, Any] = {
        "model": SERVED_NAME,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if xargs:
        body["vllm_xargs"] = xargs
    began = time.perf_counter()
    token_times: list[float] = []
    pieces: list[str] = []
    tokens = 0
    async with session.post(f"{url}/v1/completions", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {await response.text()}")
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                token_times.append(time.perf_counter())
                pieces.append(chunk["choices"][0]["text"])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    if not token_times:
        raise RuntimeError("the stream carried no token")
    tpot = (token_times[-1] - token_times[0]) / (tokens - 1) if len(token_times) > 1 and tokens > 1 else None
    return Stream(token_times[0] - began, tpot, tokens or len(token_times), "".join(pieces))


async def _gather(
    url: str,
    prompts: list[list[int]],
    max_tokens: int,
    xargs: dict[str, Any],
    arrival_s: float = 0.0,
    timeout_s: float = 3600,
) -> tuple[list[Stream], float]:
    """Every prompt's stream (in order), sent evenly over `arrival_s` (0: at once), and the wall time
    from the first send to the last stream's end."""
    import aiohttp

    gap = arrival_s / max(1, len(prompts) - 1)

    async def send(session: Any, index: int, prompt: list[int]) -> Stream:
        if gap:
            await asyncio.sleep(index * gap)
        return await stream_one(session, url, prompt, max_tokens, xargs)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        began = time.perf_counter()
        streams = await asyncio.gather(*(send(session, i, p) for i, p in enumerate(prompts)))
        return list(streams), time.perf_counter() - began


def burst(
    url: str, prompts: list[list[int]], max_tokens: int, arrival_s: float, timeout_s: float
) -> tuple[list[Stream], float]:
    """Send the prompts one every arrival_s / (n - 1) seconds, without per-request settings; every
    stream and the wall time from the first send to the last completion."""
    return asyncio.run(_gather(url, prompts, max_tokens, {}, arrival_s, timeout_s))


def wave(url: str, prompts: list[list[int]], max_tokens: int, xargs: dict[str, Any]) -> Wave:
    """Send the prompts at once and wait for every stream."""
    streams, wall = asyncio.run(_gather(url, prompts, max_tokens, xargs))
    tpots = [s.tpot_s for s in streams if s.tpot_s is not None]
    return Wave(
        statistics.mean(s.ttft_s for s in streams),
        statistics.mean(tpots) if tpots else None,
        sum(s.output_tokens for s in streams) / wall,
    )


def kv_usage_after_prefill(server: Server, prompt: list[int], xargs: dict[str, Any]) -> float:
    """The share of the KV pool a lone request holds while it decodes (after its prefill freed what it could)."""

    async def probe() -> float:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            task = asyncio.create_task(stream_one(session, server.url, prompt, 48, xargs))
            seen = []
            while not task.done():
                await asyncio.sleep(0.3)
                running = await asyncio.to_thread(server.gauge, "vllm:num_requests_running")
                usage = await asyncio.to_thread(server.gauge, "vllm:kv_cache_usage_perc")
                if running >= 1 and usage > 0:
                    seen.append(usage)
            await task
            # The last readings are after the prefill step; the first may be during it.
            return min(seen[len(seen) // 2 :]) if seen else 0.0

    return asyncio.run(probe())


def capacity(server: Server, prompts: list[list[int]], xargs: dict[str, Any]) -> dict[str, int]:
    """Send every prompt at once; the most requests running before vLLM's first preemption."""

    async def fill() -> dict[str, int]:
        base = server.gauge("vllm:num_preemptions_total")
        sent = asyncio.create_task(_gather(server.url, prompts, len(prompts) + 16, xargs))
        most, preempted, waited = 0, 0.0, 0
        while not sent.done():
            await asyncio.sleep(0.25)
            running = await asyncio.to_thread(server.gauge, "vllm:num_requests_running")
            waiting = await asyncio.to_thread(server.gauge, "vllm:num_requests_waiting")
            preempted = await asyncio.to_thread(server.gauge, "vllm:num_preemptions_total") - base
            waited = max(waited, int(waiting))
            if preempted == 0:
                most = max(most, int(running))
        await sent
        return {"max_running_before_preemption": most, "preemptions": int(preempted), "max_waiting": waited}

    return asyncio.run(fill())
