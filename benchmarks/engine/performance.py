"""TTFT, TPOT and KV held after prefill of each pruner, against unmodified vLLM in its default mode.

Every engine runs in this process, started once, in vLLM's default execution
mode (torch.compile on the CPU build), all under the same scheduler settings
(--max-num-batched-tokens, chunked prefill, no async scheduling:
common/scheduler.py); `none,vllm-default` (vLLM on its own defaults) and an
`--enforce-eager` vLLM are extra rows only. Measurements are interleaved: each
repeat runs every configuration once on the same fresh prompt of each kind, so
slow spells of a noisy machine fall on all of them; each figure is the median
over the repeats (after one warm-up request per configuration and prompt kind)
with the range beside it, and ratios are taken between medians of the same run.

- TTFT: wall time until the request's first token, however many engine steps
  the prefill takes (a prompt longer than --max-num-batched-tokens is chunked,
  pruned or not; a pruned one is pruned in the step of its last chunk).
- TPOT: median wall time of the request's decode steps.
- KV: the request's KV bytes held once its first token is out (every chunk of
  its prefill has run), read from the scheduler's block pool (bytes, since
  layer groups change what a block holds).
- Concurrent short requests: the median decode step time of `--short-requests`
  requests too short to be pruned, decoding together, on vLLM and on a
  pruning engine.

The compute bound printed beside a selecting pruner's TTFT ratio is the share of
the per-layer prefill work its selection leaves (`compute_bound`).

Configurations are specs as in the other benchmarks (benchmarks/common/configs.py);
`none` (unmodified vLLM) is always measured, as the baseline. The budgeted ones of
the default set run on an engine started with that budget (`engine-budget`).

The results file (--json) holds the commit, the settings, the machine, every
repeat's raw record and the summary table.

    python -m benchmarks.engine.performance          # 8k noise (ASL selects) and prose (no layer passes tau)
    python -m benchmarks.engine.performance --repeats 7 --json ratios.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common.cli import RESULTS_ROOT, settings_of
from benchmarks.common.configs import (
    SHARED_ENGINE_PRUNER,
    Config,
    group_by_engine,
    parse,
    request_args,
    server_flags,
)
from benchmarks.common.results_file import ResultsFile
from benchmarks.common.scheduler import add_scheduler_arguments, scheduler_of

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

CONFIGS = [
    "none",
    "none,vllm-default",
    "none,eager",
    "asl",
    "asl,B=1024,engine-budget",
    "snapkv,B=1024,engine-budget",
    "fastkv",
    "gemfilter",
    "asl-2pass",
]
BASELINE = "none"


def _prompt(llm: Any, haystack: str, length: int, tag: str) -> list[int]:
    """The prompt of `tag`: every config given a tag gets the same one; a tag of its own keeps vLLM's prefix
    cache from serving it."""
    from harness.chat_prompt import needle_prompt
    from harness.text_sources import haystack_text

    filler = f"Report {tag}. " + haystack_text(haystack, length)
    return needle_prompt(llm.get_tokenizer(), length, filler, None, 0.5, "Summarize.", "The summary is")


def measure_one(llm: Any, xargs: dict[str, Any], prompt: list[int], decode_tokens: int, tag: str) -> dict[str, Any]:
    """One request alone (`xargs`: its per-request settings): TTFT, TPOT, KV bytes after prefill and the
    pruner's decision."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from harness.engine_probe import kv_bytes_held

    engine = llm.llm_engine
    params = SamplingParams(temperature=0.0, max_tokens=decode_tokens + 1, ignore_eos=True, extra_args=xargs or None)
    engine.add_request(tag, TokensPrompt(prompt_token_ids=prompt), params)
    began = time.perf_counter()
    report = None
    while report is None:
        for output in engine.step():
            if output.outputs[0].token_ids:
                report = (output.kv_transfer_params or {}).get("kv_pruner", {})
    ttft = time.perf_counter() - began
    held = kv_bytes_held(llm, tag)
    steps = []
    while engine.has_unfinished_requests():
        began = time.perf_counter()
        engine.step()
        steps.append(time.perf_counter() - began)
    layer = report.get("selection_layer")
    return {
        "ttft_s": ttft,
        "tpot_s": statistics.median(steps),
        "kv_bytes": held,
        "selection_layer": layer,
        "bound": compute_bound(llm, xargs, layer, len(prompt)),
    }


def measure_short(llm: Any, count: int, length: int, decode_tokens: int, prompt_tag: str, request_tag: str) -> float:
    """Median decode step time of `count` short requests decoding together (prompts `prompt_tag`-i)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    engine = llm.llm_engine
    params = SamplingParams(temperature=0.0, max_tokens=decode_tokens + 1, ignore_eos=True)
    for index in range(count):
        prompt = _prompt(llm, "noise", length, f"{prompt_tag}-{index}")
        engine.add_request(f"{request_tag}-{index}", TokensPrompt(prompt_token_ids=prompt), params)
    pending = {f"{request_tag}-{index}" for index in range(count)}
    while pending:  # the prefills: one step when they fit the token budget
        pending -= {output.request_id for output in engine.step() if output.outputs[0].token_ids}
    steps = []
    while engine.has_unfinished_requests():
        began = time.perf_counter()
        engine.step()
        steps.append(time.perf_counter() - began)
    return statistics.median(steps[:-1] or steps)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def compute_bound(llm: Any, xargs: dict[str, Any], selection_layer: int | None, num_tokens: int) -> float | None:
    """Share of the per-layer prefill work left after a selection: layers after the last full layer p run on
    k' of N tokens, (p + 1 + (L - p - 1) k' / N) / L; a two-pass re-run adds L layers on k' tokens to the
    first pass's s + 1. None for vLLM and when nothing was selected."""
    from asl_vllm.budget import kept_tokens
    from asl_vllm.engine.layer_groups import bucket_of
    from asl_vllm.request_config import request_config
    from harness.engine_probe import block_size, scheduler

    server = getattr(scheduler(llm), "pruner_config", None)
    if server is None or selection_layer is None:
        return None
    layers = llm.llm_engine.vllm_config.model_config.hf_config.num_hidden_layers
    pruner = request_config(server, xargs or None).resolve(layers)
    kept = kept_tokens(num_tokens, pruner.select_k, block_size(llm))
    if pruner.two_pass or pruner.pruner_class.two_pass:
        return (selection_layer + 1 + layers * kept / num_tokens) / layers
    last_full = selection_layer
    if pruner.kv_budget is None:
        bucket = bucket_of(selection_layer, layers, pruner.layer_groups)
        last_full = max(layer for layer in range(layers) if bucket_of(layer, layers, pruner.layer_groups) == bucket)
    return (last_full + 1 + (layers - last_full - 1) * kept / num_tokens) / layers


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[Config]]:
    """The options and the configurations to measure, the baseline first."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine.performance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=None, help="model path (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--length", type=int, default=8000, help="prompt length in tokens")
    parser.add_argument("--haystacks", nargs="+", default=["noise", "prose"], choices=["noise", "prose"])
    parser.add_argument(
        "--configs", nargs="+", default=CONFIGS, metavar="SPEC", help=f"configurations (default: {' '.join(CONFIGS)})"
    )
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--short-requests", type=int, default=8, help="0 skips the concurrent short requests")
    parser.add_argument("--short-length", type=int, default=200)
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_ROOT / "engine" / "performance.json",
        help="the results file: raw per-repeat records and the summary",
    )
    add_scheduler_arguments(parser)
    args = parser.parse_args(argv)
    try:
        configs = list({config.name: config for config in map(parse, [BASELINE, *args.configs])}.values())
    except ValueError as error:
        parser.error(str(error))
    if args.short_requests and SHARED_ENGINE_PRUNER not in (config.name for config in configs):
        parser.error(
            f"the concurrent short requests run on the {SHARED_ENGINE_PRUNER} configuration's engine: "
            "add it to --configs or pass --short-requests 0"
        )
    return args, configs


def main(argv: list[str] | None = None) -> None:
    args, configs = parse_args(argv)

    from vllm import LLM

    from asl_vllm.embedded_model import materialize

    model = args.model or str(materialize())
    scheduler = scheduler_of(args).engine_args()
    groups = group_by_engine(configs, baseline_alone=True, scheduler=scheduler)
    plan = {"configs": [c.name for c in configs], "engines": [e for e, _ in groups], "estimated_seconds": None}
    results = ResultsFile(args.json, "engine_performance", settings_of(args), plan, resume=False)
    # Config name -> its engine and the engine's settings.
    engines: dict[str, tuple[Any, dict[str, Any]]] = {}
    started: list[Any] = []
    for settings, group in groups:
        began = time.perf_counter()
        llm = LLM(model=model, max_model_len=8192, seed=0, **settings)
        started.append(llm)
        engines.update({config.name: (llm, settings) for config in group})
        name = " ".join(server_flags(settings)) or "unmodified vLLM"
        print(f"engine {name}: started in {time.perf_counter() - began:.0f} s", flush=True)

    for repeat in range(-1, args.repeats):  # repeat -1: each config's warm-up, not recorded
        for haystack in args.haystacks:
            prompt_tag = f"{haystack}-{repeat}"
            for config in configs:
                llm, settings = engines[config.name]
                tag = f"{config.name}-{prompt_tag}"
                prompt = _prompt(llm, haystack, args.length, f"warm-up-{tag}" if repeat < 0 else prompt_tag)
                result = measure_one(llm, request_args(config, settings), prompt, args.decode_tokens, tag)
                if repeat >= 0:
                    key = f"{haystack}/{repeat}"
                    results.add({"config": config.name, "key": key, "haystack": haystack, "repeat": repeat, **result})
                    print(
                        f"repeat {repeat} {haystack:<5} {config.name:<28} ttft {result['ttft_s']:6.2f} s  "
                        f"tpot {result['tpot_s'] * 1000:6.1f} ms  layer {result['selection_layer']}",
                        flush=True,
                    )

    if args.short_requests:
        for repeat in range(-1, args.repeats):
            for name in (BASELINE, SHARED_ENGINE_PRUNER):
                prompt_tag = f"short-warm-up-{name}" if repeat < 0 else f"short-{repeat}"
                step = measure_short(
                    engines[name][0], args.short_requests, args.short_length, 16, prompt_tag, f"short-{name}-{repeat}"
                )
                if repeat >= 0:
                    results.add({"config": name, "key": f"short/{repeat}", "repeat": repeat, "step_s": step})

    records = results.document["records"]
    runs = {
        c.name: {h: [r for r in records if r["config"] == c.name and r.get("haystack") == h] for h in args.haystacks}
        for c in configs
    }
    short: dict[str, list[float]] = {}
    for record in records:
        if "step_s" in record:
            short.setdefault(record["config"], []).append(record["step_s"])
    results.document["summary"] = report(runs, short, args)
    results.finish()
    print(f"wrote {args.json}")
    for llm in started:
        llm.llm_engine.engine_core.shutdown()


def report(
    runs: dict[str, dict[str, list[dict[str, Any]]]], short: dict[str, list[float]], args: Any
) -> dict[str, Any]:
    """Print the table of medians, ranges and ratios to the baseline; return it as data."""
    print(
        f"\n{args.length}-token prompts, median of {args.repeats} interleaved repeats [min-max]; "
        f"ratios to unmodified vLLM (default mode) in this run"
    )
    header = (
        f"{'haystack':<9}{'config':<28}{'layer':>6}{'TTFT s':>18}{'x vllm':>8}{'bound':>7}"
        f"{'TPOT ms':>20}{'x vllm':>8}{'KV MiB':>8}{'x vllm':>8}"
    )
    print(header)
    table: dict[str, Any] = {"length": args.length, "repeats": args.repeats, "rows": [], "short": {}}
    for haystack in args.haystacks:
        base = runs[BASELINE][haystack]
        base_ttft = statistics.median(r["ttft_s"] for r in base)
        base_tpot = statistics.median(r["tpot_s"] for r in base)
        base_kv = statistics.median(r["kv_bytes"] for r in base)
        for name, by_haystack in runs.items():
            rows = by_haystack[haystack]
            ttft = summary([r["ttft_s"] for r in rows])
            tpot = summary([r["tpot_s"] * 1000 for r in rows])
            kv = statistics.median(r["kv_bytes"] for r in rows)
            layers = sorted({r["selection_layer"] for r in rows}, key=lambda layer: (layer is None, layer))
            bounds = {r["bound"] for r in rows}
            bound = bounds.pop() if len(bounds) == 1 else None
            row = {
                "haystack": haystack,
                "config": name,
                "selection_layers": layers,
                "ttft_s": ttft,
                "ttft_ratio": ttft["median"] / base_ttft,
                "tpot_ms": tpot,
                "tpot_ratio": tpot["median"] / 1000 / base_tpot,
                "kv_mib": kv / 2**20,
                "kv_ratio": kv / base_kv,
                "bound": bound,
            }
            table["rows"].append(row)
            print(
                f"{haystack:<9}{name:<28}{'/'.join(str(x) for x in layers):>6}"
                f"{ttft['median']:>7.2f} [{ttft['min']:.2f}-{ttft['max']:.2f}]{row['ttft_ratio']:>8.2f}"
                f"{'-' if bound is None else f'{bound:.2f}':>7}"
                f"{tpot['median']:>7.1f} [{tpot['min']:.1f}-{tpot['max']:.1f}]{row['tpot_ratio']:>8.2f}"
                f"{row['kv_mib']:>8.1f}{row['kv_ratio']:>8.2f}"
            )
    if short:
        base = statistics.median(short[BASELINE])
        print(
            f"\n{args.short_requests} concurrent requests of {args.short_length} tokens (too short to prune), "
            f"decode step time, median of {args.repeats} [min-max]:"
        )
        for name, values in short.items():
            s = summary([v * 1000 for v in values])
            ratio = s["median"] / 1000 / base
            table["short"][name] = {**s, "ratio": ratio}
            print(f"  {name:<6}{s['median']:7.1f} ms [{s['min']:.1f}-{s['max']:.1f}]  x vllm {ratio:.2f}")
    return table


if __name__ == "__main__":
    main()
