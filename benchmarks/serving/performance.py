"""Serving performance against the OpenAI server (`vllm serve` on loopback), every config vs `none`.

`none` is unmodified vLLM in its default execution mode (no --enforce-eager; `none,eager`
adds vLLM with --enforce-eager as an extra row). Pruned configurations run on a server
started with --kv-pruner and no --enforce-eager (the plugin decides what a pruner needs);
asl, fastkv and snapkv share one server and choose per request (`vllm_xargs`), gemfilter
and asl two-pass get their own. Every server gets the same scheduler settings
(--max-num-batched-tokens, chunked prefill, no async scheduling: common/scheduler.py);
`none,vllm-default` is vLLM on its own defaults, an extra row. All servers run at once
and take turns: per prompt length x concurrency, each config first sends one warm-up
request (not counted), then repeat r sends one wave of `concurrency` streaming requests
per config, on every server, before repeat r + 1; every config gets the same prompts. A
timing is the median over the repeats, shown with its range: TTFT, TPOT (mean over a
wave's clients) and output tokens/s. Then, per config: the KV one request holds after
its prefill (its share of the pool, read once its first token has streamed, so every
chunk of its prefill has run; the pool has the same bytes on every server:
--kv-cache-memory-bytes), with the kept tokens of its decision report, and capacity:
--capacity-requests long requests at once into a pool that holds --pool-requests
full-KV ones; the most running before vLLM's first preemption. Writes serving.json
(rewritten after every wave, one record per wave), serving.png and the servers' logs.

Small (default, minutes): 2,000 tokens x 1/2 clients, 3 repeats, 16 output tokens.
--full: 4,000 tokens x 1/4 clients, 3 repeats, 32 output tokens, capacity at 4,000 tokens.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common.cli import CONTEXT_MARGIN, apply_preset, load_tokenizer, model_path, parser_for, settings_of
from benchmarks.common.configs import (
    DEFAULT_HEADS,
    Config,
    add_config_arguments,
    configs_from_arguments,
    file_stem,
    group_by_engine,
    parse,
    request_args,
    server_flags,
)
from benchmarks.common.plots import grouped_bars
from benchmarks.common.results_file import ResultsFile, unavailable_lines
from benchmarks.common.scheduler import add_scheduler_arguments, scheduler_of
from benchmarks.common.time_estimate import Work, describe, estimate
from benchmarks.serving import tables
from benchmarks.serving.client import PromptMaker, capacity, kv_held_after_prefill, wave
from benchmarks.serving.kv_pool import pool_bytes
from benchmarks.serving.server_process import Server, ServerRefused, start

SMALL_CONFIGS = ["none", "none,vllm-default", "none,eager", "asl,B=1024,k=2048,tau=0.3", "fastkv,k=1024"]
FULL_CONFIGS = [
    "none",
    "none,vllm-default",
    "none,eager",
    "asl,B=1024,k=2048,tau=0.3",
    "snapkv,B=1024",
    "fastkv,k=1024",
]
SMALL = {
    "lengths": [2000],
    "concurrency": [1, 2],
    "repeats": 3,
    "output_tokens": 16,
    "capacity_length": 2000,
    "capacity_requests": 6,
    "pool_requests": 2,
}
FULL = {
    **SMALL,
    "lengths": [4000],
    "concurrency": [1, 4],
    "output_tokens": 32,
    "capacity_length": 4000,
    "capacity_requests": 8,
}
MIN_REPEATS = 3
PROBE_TOKENS = 48
CAPACITY_KEY = "capacity"


def parse_args(argv: list[str] | None) -> Any:
    parser = parser_for(__doc__, "benchmarks.serving.performance", "serving")
    parser.add_argument("--full", action="store_true", help="the full-size preset instead of the small one")
    parser.add_argument("--resume", action="store_true", help="keep the results already in --out for the same settings")
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="prompt lengths in tokens")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None, help="concurrent clients")
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"waves per level after the warm-up (>= {MIN_REPEATS})"
    )
    parser.add_argument("--output-tokens", type=int, default=None, help="tokens generated per request")
    parser.add_argument("--capacity-length", type=int, default=None, help="prompt length of the capacity run")
    parser.add_argument("--capacity-requests", type=int, default=None, help="long requests sent at once")
    parser.add_argument(
        "--pool-requests", type=int, default=None, help="KV pool size, in full-KV requests of --capacity-length"
    )
    parser.add_argument(
        "--block-size", type=int, default=128, help="KV block size the pool is sized in (vLLM's CPU default)"
    )
    add_config_arguments(parser, SMALL_CONFIGS, FULL_CONFIGS, heads=[DEFAULT_HEADS])
    add_scheduler_arguments(parser)
    args = parser.parse_args(argv)
    apply_preset(args, SMALL, FULL)
    if args.repeats < MIN_REPEATS:
        parser.error(f"--repeats must be at least {MIN_REPEATS} (a timing is their median)")
    return args


def plan_work(configs: list[Config], args: Any) -> list[Work]:
    """What every config costs: warm-ups, waves, the KV probes and the capacity run."""
    work = []
    for config in configs:
        for length in args.lengths:
            work += [Work(config, length, 2) for _ in args.concurrency]
            work += [Work(config, length, args.output_tokens, args.repeats * clients) for clients in args.concurrency]
        if not config.eager:
            work += [Work(config, length, PROBE_TOKENS) for length in probe_lengths(args)]
            work.append(Work(config, args.capacity_length, args.capacity_requests + 16, args.capacity_requests))
    return work


def probe_lengths(args: Any) -> list[int]:
    return sorted({*args.lengths, args.capacity_length})


def record_keys(config: Config, args: Any) -> list[str]:
    """The keys of every record a config gets: its waves, then its KV probes and capacity run."""
    keys = [
        load_key(length, clients, repeat)
        for length in args.lengths
        for clients in args.concurrency
        for repeat in range(args.repeats)
    ]
    if not config.eager:
        keys += [kv_key(length) for length in probe_lengths(args)] + [CAPACITY_KEY]
    return keys


def load_key(length: int, clients: int, repeat: int) -> str:
    return f"load/{length}x{clients}/{repeat}"


def kv_key(length: int) -> str:
    return f"kv/{length}"


def estimated_seconds(argv: list[str] | None) -> float:
    args = parse_args(argv)
    configs = configs_from_arguments(args, SMALL_CONFIGS, FULL_CONFIGS)
    groups = group_by_engine(configs, baseline_alone=True, scheduler=scheduler_of(args).engine_args())
    return estimate(plan_work(configs, args), len(groups))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    began = time.perf_counter()
    model = model_path(args)
    configs = configs_from_arguments(args, SMALL_CONFIGS, FULL_CONFIGS)
    groups = group_by_engine(configs, baseline_alone=True, scheduler=scheduler_of(args).engine_args())
    seconds = estimate(plan_work(configs, args), len(groups))
    print(f"serving: {len(configs)} configs on {len(groups)} servers")
    print(f"serving: estimated {describe(seconds)} on the reference 2-core CPU")
    plan = {"configs": [c.name for c in configs], "servers": len(groups), "estimated_seconds": round(seconds)}
    results = ResultsFile(args.out / "serving.json", "serving", settings_of(args), plan, args.resume)
    make = PromptMaker(load_tokenizer(model))
    # --pool-requests full-KV requests of --capacity-length plus their decode tokens.
    pool = pool_bytes(model, args.pool_requests, args.capacity_length + args.capacity_requests + 16, args.block_size)
    max_len = (
        max(*args.lengths, args.capacity_length) + max(args.output_tokens, args.capacity_requests + 16) + CONTEXT_MARGIN
    )
    done = results.done()
    servers: list[tuple[Server, dict[str, Any], list[Config]]] = []
    try:
        for engine, group in groups:
            runnable = [c for c in group if not {(c.name, key) for key in record_keys(c, args)} <= done]
            if not runnable:
                continue
            flags = server_flags(engine) + ["--kv-cache-memory-bytes", str(pool)]
            if args.block_size != 128:
                flags += ["--block-size", str(args.block_size)]
            name = "+".join(file_stem(config.name) for config in runnable)
            try:
                servers.append((start(model, flags, args.out / f"server_{name}.log", max_len), engine, runnable))
            except ServerRefused as refused:
                for config in runnable:
                    results.unavailable(config.name, str(refused))
        measure(servers, args, make, results, pool)
    finally:
        for server, _, _ in servers:
            server.stop()
    document = results.finish()
    plot(document, args.out)
    print(render(document))
    print(f"wrote {args.out / 'serving.json'} and serving.png beside it ({time.perf_counter() - began:.0f} s)")
    return document


def measure(
    servers: list[tuple[Server, dict[str, Any], list[Config]]],
    args: Any,
    make: PromptMaker,
    results: ResultsFile,
    pool: int,
) -> None:
    """The load levels (every config of every server in turn, repeat by repeat), then each config's KV probe
    and capacity run."""
    done = results.done()
    refused: set[str] = set()

    def attempt(
        config: Config, engine: dict[str, Any], key: str, run: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> None:
        if config.name in refused or (config.name, key) in done:
            return
        try:
            record = run(request_args(config, engine))
        except RuntimeError as error:  # the server refused this config's per-request settings
            refused.add(config.name)
            results.unavailable(config.name, str(error).splitlines()[0])
            return
        results.add({"config": config.name, "key": key, **record})

    every = [(server, engine, config) for server, engine, group in servers for config in group]
    for length in args.lengths:
        for clients in args.concurrency:
            for server, engine, config in every:  # each config's own warm-up, not counted
                if config.name not in refused:
                    warm_up = make(length, f"warm-up/{config.name}/{length}x{clients}")
                    wave(server.url, [warm_up], 2, request_args(config, engine))
            for repeat in range(args.repeats):
                key = load_key(length, clients, repeat)
                prompts = [make(length, f"{key}/{index}") for index in range(clients)]
                for server, engine, config in every:
                    load = functools.partial(_load, server, prompts, length, clients, repeat, args.output_tokens)
                    attempt(config, engine, key, load)
    for server, engine, config in every:
        if config.eager:
            continue
        for length in probe_lengths(args):
            attempt(config, engine, kv_key(length), functools.partial(_kv, server, make, length, pool))
        attempt(config, engine, CAPACITY_KEY, functools.partial(_capacity, server, make, args))


def _load(
    server: Server,
    prompts: list[list[int]],
    length: int,
    clients: int,
    repeat: int,
    tokens: int,
    xargs: dict[str, Any],
) -> dict[str, Any]:
    measured = wave(server.url, prompts, tokens, xargs)
    return {"kind": "load", "length": length, "clients": clients, "repeat": repeat, **vars(measured)}


def _kv(server: Server, make: PromptMaker, length: int, pool: int, xargs: dict[str, Any]) -> dict[str, Any]:
    held = kv_held_after_prefill(server, make(length, kv_key(length)), PROBE_TOKENS, xargs)
    kv_bytes = None if held.usage is None else round(held.usage * pool)
    return {"kind": "kv", "length": length, "usage": held.usage, "kv_bytes": kv_bytes, "report": held.report}


def _capacity(server: Server, make: PromptMaker, args: Any, xargs: dict[str, Any]) -> dict[str, Any]:
    prompts = [make(args.capacity_length, f"{CAPACITY_KEY}/{index}") for index in range(args.capacity_requests)]
    return {"kind": "capacity", "length": args.capacity_length, **capacity(server, prompts, xargs)}


def render(document: dict[str, Any], link: str = "") -> str:
    records, settings = document["records"], document["settings"]
    pruned = next((c for c in document["plan"]["configs"] if parse(c).pruner_class.adaptive), None)
    lines = [
        f"Median over {settings['repeats']} waves after a warm-up request per config (range in brackets), servers "
        "and configs taking turns wave by wave on the same prompts; "
        f"`none` is vLLM in its default mode under the scheduler settings every server gets "
        f"(--max-num-batched-tokens {settings.get('max_num_batched_tokens', 'as vLLM sets it')}, chunked prefill, "
        "no async scheduling), `none,vllm-default` vLLM on its own defaults and `none,eager` with --enforce-eager "
        "(extra rows). KV after prefill: the pool share a lone request holds once its first token has streamed; "
        "kept tokens: its decision report's. "
        f"KV pool: {settings['pool_requests']} full-KV requests of {settings['capacity_length']} tokens, "
        "the same bytes on every server.",
        "",
        tables.load_table(records),
        "",
        tables.memory_table(records),
    ]
    if pruned:
        lines += ["", tables.targets(records, pruned, settings["capacity_length"])]
    lines += unavailable_lines(document)
    if link:
        lines += ["", f"![serving]({link}/serving.png)"]
    return "\n".join(lines)


def plot(document: dict[str, Any], out: Path) -> None:
    """serving.png in `out`: each config's TTFT as a ratio to unmodified vLLM's, per load level."""
    path = out / "serving.png"
    medians = tables.level_medians(document["records"])
    base = medians.get(tables.BASELINE)
    if not base:
        return
    levels = list(base)
    series = {
        config: [rows[level]["ttft_s"][0] / base[level]["ttft_s"][0] if level in rows else None for level in levels]
        for config, rows in medians.items()
    }
    labels = [f"{length} x {clients}" for length, clients in levels]
    grouped_bars(
        path, "Median TTFT as a ratio to vLLM's default mode (tokens x clients)", labels, series, "TTFT / TTFT(none)"
    )


if __name__ == "__main__":
    main()
