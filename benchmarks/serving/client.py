"""The client side of the server benchmarks: streamed completions, waves and bursts of them, /metrics probes.

Everything here talks to one running `vllm serve` over HTTP; what to send and how often is
decided by the serving and pressure benchmarks (performance.py, pressure.py).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import zlib
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
    # The pruner's decision report (`kv_transfer_params["kv_pruner"]`); None from a server without a pruner.
    report: dict[str, Any] | None = None


@dataclass
class KvHeld:
    """The KV pool share one lone request holds once its prefill has finished, and its decision report."""

    usage: float | None
    report: dict[str, Any] | None


@dataclass
class Wave:
    """One wave of concurrent requests: the means over its streams and its output rate."""

    ttft_s: float
    tpot_s: float | None
    tokens_per_s: float


class PromptMaker:
    """Prose prompts of an exact length, one per tag: every config given a tag gets the same prompt, and
    each tag's own prefix keeps a prefix cache from serving one prompt's KV to another."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._made: dict[tuple[int, str], list[int]] = {}

    def __call__(self, length: int, tag: str) -> list[int]:
        if (length, tag) not in self._made:
            filler = f"Document {tag}. " + haystack_text("prose", length)
            self._made[length, tag] = needle_prompt(
                self.tokenizer,
                length,
                filler,
                f"The special magic number is: {1000000 + zlib.crc32(tag.encode()) % 9000000}.",
                0.5,
                "What is the special magic number mentioned in the text above?",
                "The special magic number is",
                at_sentence=True,
            )
        return self._made[length, tag]


async def stream_one(
    session: Any,
    url: str,
    prompt: list[int],
    max_tokens: int,
    xargs: dict[str, Any],
    first_token: asyncio.Event | None = None,
) -> Stream:
    """One streaming completion; raises RuntimeError on an HTTP error (the body says why). `first_token` is
    set when the first token arrives: the whole prefill, every chunk of it, has run by then."""
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
    report = None
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
                if first_token is not None:
                    first_token.set()
            report = (chunk.get("kv_transfer_params") or {}).get("kv_pruner", report)
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    if not token_times:
        raise RuntimeError("the stream carried no token")
    tpot = (token_times[-1] - token_times[0]) / (tokens - 1) if len(token_times) > 1 and tokens > 1 else None
    return Stream(token_times[0] - began, tpot, tokens or len(token_times), "".join(pieces), report)


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


def kv_held_after_prefill(server: Server, prompt: list[int], max_tokens: int, xargs: dict[str, Any]) -> KvHeld:
    """The pool share a lone request holds after its first token, and its decision report.

    The pool gauge is read only once the first token has streamed: before it, a chunked prefill
    may sit between chunks and hold only part of the prompt. The smallest reading after it is
    the prefill's KV (pruned blocks never come back; decoding adds at most a block per
    `block_size` tokens). None when the request finished before a reading came.
    """

    async def probe() -> KvHeld:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            first = asyncio.Event()
            task = asyncio.create_task(stream_one(session, server.url, prompt, max_tokens, xargs, first))
            seen = []
            while not task.done():
                await asyncio.sleep(0.1)
                if not first.is_set():
                    continue
                usage = await asyncio.to_thread(server.gauge, "vllm:kv_cache_usage_perc")
                running = await asyncio.to_thread(server.gauge, "vllm:num_requests_running")
                if running >= 1 and not task.done():
                    seen.append(usage)
            stream = await task
            return KvHeld(min(seen) if seen else None, stream.report)

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
