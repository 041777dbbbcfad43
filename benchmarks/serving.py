"""Serving performance against the OpenAI server (`vllm serve` on loopback), every pruner vs `none`.

For each pruner and prompt length x concurrency, `concurrency` streaming clients send
their requests at once (--waves times): TTFT (time to the first streamed token), TPOT
(mean time between the following tokens), output tokens/s of the wave. Then:
- KV blocks (and bytes) one request holds after its prefill: vLLM's `kv_cache_usage_perc`
  x the pool's blocks, read while a lone request decodes;
- capacity: --capacity-requests long requests sent at once into a fixed KV pool
  (`--num-gpu-blocks-override`, sized to hold --pool-requests full-KV requests); the most
  requests vLLM's /metrics shows running before its first preemption.
Every number is also given as a ratio to `none` (unmodified vLLM) measured in the same
run. Every server runs eagerly (`--enforce-eager`, as the pruners need). `none` runs on
a server without --kv-pruner; asl, fastkv and snapkv share one
server with `--kv-pruner asl --kv-budget B` and pick their pruner per request
(`vllm_xargs`); gemfilter and asl-2pass get their own server, and a server that refuses
its flags is recorded as not available. Writes serving.json, serving.png and the
servers' logs.

Small default (minutes on a CPU): 1k/2k tokens x 1/4 clients, 32 output tokens, capacity
at 2k tokens, budget 512. The targets' setting: --lengths 8192 --concurrency 1 4 16
--capacity-length 8192 --budget 1024 --select-k 2048 --capacity-requests 24
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.chat_prompt import needle_prompt
from benchmarks.cli import load_tokenizer, model_path, parser_for, settings_of, write_results
from benchmarks.plots import grouped_bars
from benchmarks.pruners import PrunerRun, add_pruner_arguments, group_by_engine, runs_from_arguments, server_flags
from benchmarks.server_process import SERVED_NAME, Server, ServerRefused, start
from benchmarks.text_sources import haystack_text

TARGET_KV_FRACTION = 1 / 6
TARGET_CAPACITY_RATIO = 5.0


@dataclass
class Stream:
    ttft_s: float
    tpot_s: float | None
    output_tokens: int


class PromptMaker:
    """Distinct prose prompts of an exact length: a per-request prefix defeats prefix caching."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.count = 0

    def __call__(self, length: int) -> list[int]:
        self.count += 1
        filler = f"Document {self.count}. " + haystack_text("prose", length)
        return needle_prompt(
            self.tokenizer, length, filler, f"The special magic number is: {1000000 + self.count}.", 0.5,
            "What is the special magic number mentioned in the text above?", "The special magic number is",
            at_sentence=True,
        )


async def stream_one(session: Any, url: str, prompt: list[int], max_tokens: int, xargs: dict[str, Any]) -> Stream:
    """One streaming completion; raises on an HTTP error (the body says why)."""
    body: dict[str, Any] = {
        "model": SERVED_NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
        "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True},
    }
    if xargs:
        body["vllm_xargs"] = xargs
    began = time.perf_counter()
    token_times: list[float] = []
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
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    if not token_times:
        raise RuntimeError("the stream carried no token")
    gaps = len(token_times) - 1
    tpot = (token_times[-1] - token_times[0]) / (tokens - 1) if gaps and tokens > 1 else None
    return Stream(token_times[0] - began, tpot, tokens or len(token_times))


async def wave(url: str, prompts: list[list[int]], max_tokens: int, xargs: dict[str, Any]) -> tuple[list[Stream], float]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        began = time.perf_counter()
        streams = await asyncio.gather(*(stream_one(session, url, p, max_tokens, xargs) for p in prompts))
        return list(streams), time.perf_counter() - began


def pool_geometry(server: Server) -> tuple[int, int]:
    """(block size, blocks in the pool) from vLLM's cache_config_info metric."""
    (labels, _), *_ = server.metrics()["vllm:cache_config_info"]
    return int(labels["block_size"]), int(labels["num_gpu_blocks"])


def block_bytes(model: str, block_size: int) -> int:
    """Bytes of K and V one block holds over all layers (model dtype)."""
    config = json.loads((Path(model) / "config.json").read_text())
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    width = 4 if "32" in dtype else 2
    return 2 * config["num_hidden_layers"] * config.get("num_key_value_heads", 1) * head_dim * block_size * width


def blocks_after_prefill(server: Server, make: PromptMaker, length: int, xargs: dict[str, Any], pool: int) -> int:
    """Blocks a lone request holds while it decodes (after its prefill freed what it could)."""

    async def probe() -> int:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            task = asyncio.create_task(stream_one(session, server.url, make(length), 48, xargs))
            seen = []
            while not task.done():
                await asyncio.sleep(0.3)
                running = await asyncio.to_thread(server.gauge, "vllm:num_requests_running")
                usage = await asyncio.to_thread(server.gauge, "vllm:kv_cache_usage_perc")
                if running >= 1 and usage > 0:
                    seen.append(round(usage * pool))
            await task
            # The last readings are after the prefill step; the first may be during it.
            return min(seen[len(seen) // 2 :]) if seen else 0

    return asyncio.run(probe())


def capacity(server: Server, make: PromptMaker, length: int, count: int, xargs: dict[str, Any]) -> dict[str, Any]:
    """Send `count` long requests at once; the most running before vLLM's first preemption."""

    async def fill() -> dict[str, Any]:
        base_preemptions = server.gauge("vllm:num_preemptions_total")
        prompts = [make(length) for _ in range(count)]
        sent = asyncio.create_task(wave(server.url, prompts, count + 16, xargs))
        most, preempted, waited = 0, 0.0, 0
        while not sent.done():
            await asyncio.sleep(0.25)
            running = await asyncio.to_thread(server.gauge, "vllm:num_requests_running")
            waiting = await asyncio.to_thread(server.gauge, "vllm:num_requests_waiting")
            preempted = await asyncio.to_thread(server.gauge, "vllm:num_preemptions_total") - base_preemptions
            waited = max(waited, int(waiting))
            if preempted == 0:
                most = max(most, int(running))
        await sent
        return {"max_running_before_preemption": most, "preemptions": int(preempted), "max_waiting": waited}

    return asyncio.run(fill())


def measure_pruner(server: Server, run: PrunerRun, args: Any, make: PromptMaker, model: str) -> dict[str, Any]:
    from tqdm import tqdm

    block_size, pool = pool_geometry(server)
    xargs = run.request if run.engine else {}
    levels = [(length, clients) for length in args.lengths for clients in args.concurrency]
    cells = {}
    for length, clients in tqdm(levels, desc=f"{run.name} load", unit="level"):
        asyncio.run(wave(server.url, [make(length)], 2, xargs))  # warm-up
        streams, walls = [], []
        for _ in range(args.waves):
            done, wall = asyncio.run(wave(server.url, [make(length) for _ in range(clients)], args.output_tokens, xargs))
            streams += done
            walls.append(wall)
        tpots = [s.tpot_s for s in streams if s.tpot_s is not None]
        cells[f"{length}x{clients}"] = {
            "length": length,
            "concurrency": clients,
            "ttft_s": statistics.mean(s.ttft_s for s in streams),
            "tpot_s": statistics.mean(tpots) if tpots else None,
            "output_tokens_per_s": sum(s.output_tokens for s in streams) / sum(walls),
        }
    held = {}
    for length in sorted({*args.lengths, args.capacity_length}):
        blocks = blocks_after_prefill(server, make, length, xargs, pool)
        held[str(length)] = {"blocks": blocks, "bytes": blocks * block_bytes(model, block_size)}
    print(f"{run.name}: capacity run ({args.capacity_requests} x {args.capacity_length} tokens, pool {pool} blocks)")
    filled = capacity(server, make, args.capacity_length, args.capacity_requests, xargs)
    return {
        "available": True, "block_size": block_size, "pool_blocks": pool,
        "load": cells, "kv_after_prefill": held, "capacity": filled,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = parser_for(__doc__, "serving")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048], help="prompt lengths in tokens")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], help="concurrent clients")
    parser.add_argument("--output-tokens", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--waves", type=int, default=1, help="waves of requests per level")
    parser.add_argument("--capacity-length", type=int, default=2048, help="prompt length of the capacity run")
    parser.add_argument("--capacity-requests", type=int, default=12, help="long requests sent at once")
    parser.add_argument(
        "--pool-requests", type=int, default=4, help="KV pool size, in full-KV requests of --capacity-length"
    )
    parser.add_argument(
        "--block-size", type=int, default=128, help="KV block size the pool is counted in (vLLM's CPU default; "
        "a value other than 128 is also passed to the servers)",
    )
    add_pruner_arguments(parser, budget=512, select_k=1024)
    args = parser.parse_args(argv)
    began = time.perf_counter()

    model = model_path(args)
    make = PromptMaker(load_tokenizer(model))
    max_len = max(*args.lengths, args.capacity_length) + max(args.output_tokens, args.capacity_requests + 16) + 64
    runs = [PrunerRun("none", {}) if run.name == "none" else run for run in runs_from_arguments(args)]
    results: dict[str, Any] = {}
    for group in group_by_engine(runs):
        flags = server_flags(group[0].engine) + ["--num-gpu-blocks-override", str(pool_blocks(args))]
        if args.block_size != 128:
            flags += ["--block-size", str(args.block_size)]
        name = "+".join(run.name for run in group)
        try:
            server = start(model, flags, args.out / f"server_{name}.log", max_len)
        except ServerRefused as refused:
            for run in group:
                results[run.name] = {"available": False, "reason": str(refused)}
                print(f"{run.name}: not available ({refused})")
            continue
        try:
            for run in group:
                results[run.name] = measure_pruner(server, run, args, make, model)
        finally:
            server.stop()
    results = {run.name: results[run.name] for run in runs}
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "serving.png")
    path = write_results(args.out, "serving", settings_of(args), results, began)
    print(table(results))
    print(targets(results, args.capacity_length))
    print(f"wrote {path} and serving.png beside it ({time.perf_counter() - began:.0f} s)")
    return results


def pool_blocks(args: Any) -> int:
    """The fixed pool: --pool-requests full-KV requests of --capacity-length plus their decode tokens."""
    tokens = args.capacity_length + args.capacity_requests + 16
    return args.pool_requests * math.ceil(tokens / args.block_size)


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value is not None and base else "-"


def table(results: dict[str, Any]) -> str:
    """Markdown tables: load (TTFT, TPOT, tokens/s) and memory (blocks after prefill, capacity)."""
    base = results.get("none") if results.get("none", {}).get("available") else None
    lines = [
        "| pruner | tokens x clients | TTFT s | x none | TPOT ms | x none | output tok/s | x none |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for pruner, result in results.items():
        if not result["available"]:
            lines.append(f"| {pruner} | not available: {result['reason']} | | | | | | |")
            continue
        for key, cell in result["load"].items():
            ref = base["load"].get(key, {}) if base else {}
            tpot = f"{cell['tpot_s'] * 1000:.1f}" if cell["tpot_s"] is not None else "-"
            lines.append(
                f"| {pruner} | {cell['length']} x {cell['concurrency']} | {cell['ttft_s']:.2f} | "
                f"{_ratio(cell['ttft_s'], ref.get('ttft_s'))} | {tpot} | {_ratio(cell['tpot_s'], ref.get('tpot_s'))} | "
                f"{cell['output_tokens_per_s']:.1f} | {_ratio(cell['output_tokens_per_s'], ref.get('output_tokens_per_s'))} |"
            )
    lines += [
        "",
        "| pruner | tokens | KV blocks after prefill | MiB | x none | most running before preemption (pool) | x none | preemptions |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for pruner, result in results.items():
        if not result["available"]:
            continue
        filled = result["capacity"]
        ref_fill = base["capacity"]["max_running_before_preemption"] if base else None
        for length, held in result["kv_after_prefill"].items():
            ref = base["kv_after_prefill"][length]["blocks"] if base else None
            lines.append(
                f"| {pruner} | {length} | {held['blocks']} | {held['bytes'] / 2**20:.0f} | {_ratio(held['blocks'], ref)} | "
                f"{filled['max_running_before_preemption']} ({result['pool_blocks']} blocks) | "
                f"{_ratio(filled['max_running_before_preemption'], ref_fill)} | {filled['preemptions']} |"
            )
    return "\n".join(lines)


def targets(results: dict[str, Any], capacity_length: int) -> str:
    """The serving targets for asl against none (printed, not asserted)."""
    base, asl = results.get("none", {}), results.get("asl", {})
    if not (base.get("available") and asl.get("available")):
        return "Targets: not measured (needs none and asl)"
    key = str(capacity_length)
    kv = asl["kv_after_prefill"][key]["blocks"] / max(base["kv_after_prefill"][key]["blocks"], 1)
    fill = asl["capacity"]["max_running_before_preemption"] / max(base["capacity"]["max_running_before_preemption"], 1)
    lines = [
        f"Targets at {capacity_length} tokens (printed, not asserted; stated for 8192 tokens, budget 1024):",
        f"- KV after prefill: asl/none = {kv:.3f} (<= {TARGET_KV_FRACTION:.3f}: {'met' if kv <= TARGET_KV_FRACTION else 'NOT met'})",
        f"- capacity in one pool: asl/none = {fill:.2f}x (>= {TARGET_CAPACITY_RATIO:g}x: "
        f"{'met' if fill >= TARGET_CAPACITY_RATIO else 'NOT met'})",
    ]
    for metric in ("ttft_s", "tpot_s"):
        pairs = [
            (cell[metric], base["load"][cell_key][metric])
            for cell_key, cell in asl["load"].items()
            if cell_key in base["load"] and cell[metric] is not None and base["load"][cell_key][metric] is not None
        ]
        worst = max((mine / theirs for mine, theirs in pairs), default=None)
        if worst is not None:
            lines.append(f"- {metric[:-2].upper()}: worst asl/none over the levels = {worst:.2f} (<= 1: {'met' if worst <= 1 else 'NOT met'})")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    available = {pruner: result for pruner, result in results.items() if result["available"]}
    if "none" not in available:
        return
    keys = list(available["none"]["load"])
    series = {}
    for pruner, result in available.items():
        series[pruner] = [
            result["load"][key]["ttft_s"] / available["none"]["load"][key]["ttft_s"] if key in result["load"] else None
            for key in keys
        ]
    grouped_bars(path, "TTFT as a ratio to none (tokens x clients)", keys, series, "TTFT / TTFT(none)")


if __name__ == "__main__":
    main()
