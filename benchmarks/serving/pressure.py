"""Memory pressure: a burst of long requests against a KV pool sized for a few full ones.

Four `vllm serve` servers on the same pool: vLLM unchanged (default mode), a fixed
`--kv-budget` and `--kv-budget auto`, all three under the same scheduler settings
(--max-num-batched-tokens, chunked prefill, no async scheduling: common/scheduler.py),
and `vllm default`, vLLM on its own scheduler defaults (an extra row). Each burst sends --requests prompts of --length
tokens, one every --arrival-s / --requests seconds, each with a 7-digit needle at a
depth between 10 % and 90 % of a noise or prose haystack; the model answers greedily
after "The special magic number is". The servers take turns burst by burst (the same
prompts for all within a repeat, new prompts each repeat), after two warm-up
requests per server that are not counted. Printed per server:
completed requests per minute (from the first send to the last completion), TTFT p50 and
p99 (nearest rank: the slowest request below 100), preemptions (vLLM's counter) and,
for the pruning servers, shrinks and preemptions avoided (the pruner's counters): the
median over repeats with [min, max]. Needle accuracy is pooled over the repeats with a
95 % Wilson interval, and each server's loss is against vLLM's answers to the same
prompts. Writes pressure.json (commit, settings, machine and one record per burst, rewritten
after each).
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.common.cli import load_tokenizer, model_path, parser_for, settings_of
from benchmarks.common.configs import server_flags
from benchmarks.common.machine import one_line
from benchmarks.common.results_file import ResultsFile
from benchmarks.common.scheduler import add_scheduler_arguments, scheduler_of
from benchmarks.common.stats import Score, score
from benchmarks.serving import client
from benchmarks.serving.kv_pool import pool_bytes
from benchmarks.serving.server_process import Server, ServerRefused, start
from harness.chat_prompt import needle_prompt
from harness.text_sources import HAYSTACK_KINDS, haystack_text, random_value

# Issue 17's targets, printed beside the figures.
THROUGHPUT_TARGET = 2.0
TTFT_P99_TARGET = 0.5
BLOCK_SIZE = 128
# A burst of long requests on a CPU may take an hour.
BURST_TIMEOUT_S = 7200


@dataclass(frozen=True)
class Item:
    prompt: list[int]
    value: str


def parse_args(argv: list[str] | None) -> Any:
    parser = parser_for(__doc__, "benchmarks.serving.pressure", "pressure")
    parser.add_argument("--requests", type=int, default=24, help="requests per burst")
    parser.add_argument("--length", type=int, default=6000, help="prompt tokens per request")
    parser.add_argument("--pool-requests", type=float, default=4, help="the pool holds this many full requests")
    parser.add_argument("--arrival-s", type=float, default=5.0, help="the burst arrives over this many seconds")
    parser.add_argument("--max-tokens", type=int, default=12, help="tokens each request generates")
    parser.add_argument("--repeats", type=int, default=1, help="bursts per server (new prompts each)")
    parser.add_argument("--pruner", default="asl")
    parser.add_argument("--budget", type=int, default=1024, help="the fixed --kv-budget, and auto's --kv-budget-min")
    parser.add_argument("--seed", type=int, default=0)
    add_scheduler_arguments(parser)
    return parser.parse_args(argv)


def server_configs(args: Any) -> dict[str, list[str]]:
    """Server name -> its flags: the scheduler settings on every server but `vllm default`."""
    scheduler = server_flags(scheduler_of(args).engine_args())
    return {
        "vllm": scheduler,
        "vllm default": [],
        f"fixed B={args.budget}": ["--kv-pruner", args.pruner, "--kv-budget", str(args.budget), *scheduler],
        f"auto min={args.budget}": [
            "--kv-pruner",
            args.pruner,
            "--kv-budget",
            "auto",
            "--kv-budget-min",
            str(args.budget),
            *scheduler,
        ],
    }


def build_items(tokenizer: Any, args: Any, repeat: int) -> list[Item]:
    rng = random.Random(f"{args.seed}-{repeat}")
    items = []
    for index in range(args.requests):
        value = random_value("number", rng)
        kind = HAYSTACK_KINDS[index % len(HAYSTACK_KINDS)]
        depth = 0.1 + 0.8 * index / max(1, args.requests - 1)
        filler = f"Report {repeat}-{index}. " + haystack_text(kind, args.length)
        prompt = needle_prompt(
            tokenizer,
            args.length,
            filler,
            f"The special magic number is: {value}.",
            depth,
            "What is the special magic number mentioned in the text above?",
            "The special magic number is",
            at_sentence=kind == "prose",
        )
        items.append(Item(prompt, value))
    return items


def counters(server: Server) -> dict[str, float]:
    return {
        "preemptions": server.gauge("vllm:num_preemptions_total"),
        "shrinks": server.gauge("vllm:kv_pruner_shrinks_total"),
        "preemptions_avoided": server.gauge("vllm:kv_pruner_preemptions_avoided_total"),
        "shrink_freed_blocks": server.gauge("vllm:kv_pruner_shrink_freed_blocks_total"),
        "auto_full": sum(
            value
            for labels, value in server.metrics().get("vllm:kv_pruner_auto_budget_requests_total", [])
            if labels.get("budget") == "full"
        ),
    }


def burst(server: Server, items: list[Item], args: Any) -> dict[str, Any]:
    """One burst against one server: throughput, TTFT, counters moved, and each prompt's answer."""
    before = counters(server)
    prompts = [item.prompt for item in items]
    streams, wall = client.burst(server.url, prompts, args.max_tokens, args.arrival_s, BURST_TIMEOUT_S)
    after = counters(server)
    ttfts = sorted(stream.ttft_s for stream in streams)
    return {
        "requests_per_min": 60 * len(streams) / wall,
        "wall_s": wall,
        "ttft_p50_s": statistics.median(ttfts),
        "ttft_p99_s": ttfts[math.ceil(0.99 * len(ttfts)) - 1],
        **{name: after[name] - before[name] for name in before},
        "found": [item.value in stream.text for item, stream in zip(items, streams, strict=True)],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    began = time.perf_counter()
    model = model_path(args)
    tokenizer = load_tokenizer(model)
    # --pool-requests full requests, prompt and answer.
    pool = pool_bytes(model, args.pool_requests, args.length + args.max_tokens, BLOCK_SIZE)
    configs = server_configs(args)
    max_len = args.length + args.max_tokens + BLOCK_SIZE
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"pressure: {args.requests} x {args.length} tokens over {args.arrival_s:g} s, pool of {pool / 2**20:.0f} MiB")
    servers: dict[str, Server] = {}
    plan = {"configs": list(configs), "flags": configs, "pool_bytes": pool, "estimated_seconds": None}
    results = ResultsFile(args.out / "pressure.json", "pressure", settings_of(args), plan, resume=False)
    try:
        for name, flags in configs.items():
            stem = name.replace(" ", "_")
            try:
                servers[name] = start(
                    model, [*flags, "--kv-cache-memory-bytes", str(pool)], args.out / f"server_{stem}.log", max_len
                )
            except ServerRefused as refused:
                results.unavailable(name, str(refused))
        warm_up = [item.prompt for item in build_items(tokenizer, args, -1)[:2]]
        for server in servers.values():
            client.burst(server.url, warm_up, args.max_tokens, 0.0, BURST_TIMEOUT_S)  # compiles and caches: not counted
        for repeat in range(args.repeats):
            items = build_items(tokenizer, args, repeat)
            for name, server in servers.items():
                record = {"config": name, "key": f"burst/{repeat}", "repeat": repeat, **burst(server, items, args)}
                results.add(record)
                print(
                    f"  {name} repeat {repeat}: {record['requests_per_min']:.1f} req/min, "
                    f"TTFT p99 {record['ttft_p99_s']:.1f} s, preemptions {record['preemptions']:.0f}, "
                    f"shrinks {record['shrinks']:.0f}"
                )
    finally:
        for server in servers.values():
            server.stop()
    document = results.finish()
    print(render(document))
    print(f"wrote {args.out / 'pressure.json'} ({time.perf_counter() - began:.0f} s)")
    return document


def _median_range(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def summary(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per config: its records' figures as lists (repeat order) and its pooled needle answers."""
    by_config: dict[str, dict[str, Any]] = {}
    for record in records:
        entry = by_config.setdefault(record["config"], {"found": []})
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "repeat":
                entry.setdefault(key, []).append(value)
        entry["found"].extend(record["found"])
    return by_config


def render(document: dict[str, Any]) -> str:
    settings = document["settings"]
    configs = summary(document["records"])
    lines = [
        f"Memory pressure: {settings['requests']} x {settings['length']} tokens arriving over "
        f"{settings['arrival_s']:g} s, pool for {settings['pool_requests']:g} full requests, "
        f"{settings['max_tokens']} tokens each, {settings['repeats']} repeat(s); {one_line(document['machine'])}.",
        "",
        "| server | requests/min | TTFT p50 s | TTFT p99 s | preemptions | shrinks | preemptions avoided "
        "| needle found % [95 % CI] |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    scores: dict[str, Score] = {}
    for name, entry in configs.items():
        scores[name] = score([1.0 if found else 0.0 for found in entry["found"]])
        lines.append(
            f"| {name} | {_median_range(entry['requests_per_min'])} | {_median_range(entry['ttft_p50_s'])} "
            f"| {_median_range(entry['ttft_p99_s'])} | {_median_range(entry['preemptions'], 0)} "
            f"| {_median_range(entry['shrinks'], 0)} | {_median_range(entry['preemptions_avoided'], 0)} "
            f"| {scores[name]} |"
        )
    for name, reason in document.get("unavailable", {}).items():
        lines.append(f"| {name} | not available: {reason} | | | | | | |")
    lines += ["", *targets(configs, scores)]
    return "\n".join(lines)


def targets(configs: dict[str, dict[str, Any]], scores: dict[str, Score]) -> list[str]:
    """Issue 17's targets against vLLM, from the medians; the needle loss is against vLLM's answers."""
    base = configs.get("vllm")
    auto = next((name for name in configs if name.startswith("auto")), None)
    fixed = next((name for name in configs if name.startswith("fixed")), None)
    if base is None or auto is None:
        return ["Targets: not computed (vLLM's or auto's run is missing)."]
    ratio = statistics.median(configs[auto]["requests_per_min"]) / statistics.median(base["requests_per_min"])
    ttft = statistics.median(configs[auto]["ttft_p99_s"]) / statistics.median(base["ttft_p99_s"])
    lines = [
        f"Target: auto >= {THROUGHPUT_TARGET:g}x vLLM's throughput: {ratio:.2f}x "
        f"({'met' if ratio >= THROUGHPUT_TARGET else 'NOT met'}).",
        f"Target: auto's TTFT p99 <= {TTFT_P99_TARGET:g}x vLLM's: {ttft:.2f}x "
        f"({'met' if ttft <= TTFT_P99_TARGET else 'NOT met'}).",
    ]
    if fixed is not None:
        fixed_loss = scores["vllm"].mean - scores[fixed].mean
        auto_loss = scores["vllm"].mean - scores[auto].mean
        met = auto_loss <= max(0.0, fixed_loss) / 2
        lines.append(
            f"Target: auto's needle loss <= half the fixed budget's: auto {auto_loss:+.1f} points, fixed "
            f"{fixed_loss:+.1f} points against vLLM ({'met' if met else 'NOT met'}; intervals in the table)."
        )
    return lines


if __name__ == "__main__":
    main()
