"""TTFT, TPOT and KV blocks held after prefill: each pruner against unmodified vLLM, same run.

Every configuration runs in this process on the embedded model (or `--model`),
one request at a time: TTFT is the wall time until the first token (one engine
step with a pruner, whose chunked prefill is off; possibly several for `none`), TPOT the mean wall time of the following
decode steps, blocks the request's non-null KV blocks right after prefill, read
from the scheduler's KV cache manager, per KV cache group (one per layer bucket
with `--kv-layer-groups`) and as KV bytes: a block's size depends on the group
layout, so the memory ratio is taken on bytes. Ratios are against `none`
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

CONFIGS: dict[str, dict[str, Any]] = {
    "none": {},
    "asl": {"kv_pruner": "asl"},
    "asl-t0.5-k1024": {"kv_pruner": "asl", "asl_tau": 0.5, "asl_select_k": 1024},
    "asl-B1024": {"kv_pruner": "asl", "kv_budget": 1024},
    "snapkv-B1024": {"kv_pruner": "snapkv", "kv_budget": 1024},
    "fastkv": {"kv_pruner": "fastkv"},
    "gemfilter": {"kv_pruner": "gemfilter"},
    "asl-2pass": {"kv_pruner": "asl", "asl_two_pass": True},
}


def measure(llm: Any, length: int, decode_tokens: int, repeats: int, tag: str) -> dict[str, Any]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from benchmarks.chat_prompt import needle_prompt
    from benchmarks.engine_probe import blocks_held_per_group, decisions, kv_bytes_held
    from benchmarks.text_sources import haystack_text

    engine = llm.llm_engine
    pruning = hasattr(engine.engine_core.engine_core.scheduler, "pruner_config")
    if pruning:
        decisions(llm)
    params = SamplingParams(temperature=0.0, max_tokens=decode_tokens + 1, ignore_eos=True)
    ttfts, tpots = [], []
    for attempt in range(repeats):
        req_id = f"bench-{tag}-{attempt}"
        # A fresh prefix per attempt: unmodified vLLM's prefix cache must not serve the prompt.
        filler = f"Report {tag}-{attempt}. " + haystack_text("noise", length)
        prompt = needle_prompt(llm.get_tokenizer(), length, filler, None, 0.5, "Summarize.", "The special magic number is")
        engine.add_request(req_id, TokensPrompt(prompt_token_ids=prompt), params)
        began = time.perf_counter()
        while not any(output.outputs[0].token_ids for output in engine.step()):
            pass  # unmodified vLLM may split a long prefill into several chunked steps
        ttfts.append(time.perf_counter() - began)
        held = blocks_held_per_group(llm, req_id)
        held_bytes = kv_bytes_held(llm, req_id)
        steps = []
        while engine.has_unfinished_requests():
            began = time.perf_counter()
            engine.step()
            steps.append(time.perf_counter() - began)
        tpots.append(statistics.mean(steps))
    made = decisions(llm) if pruning else {}
    layer = next(iter(made.values()))["selection_layer"] if made else None
    return {
        "ttft_s": statistics.median(ttfts),
        "tpot_s": statistics.median(tpots),
        "blocks_held_after_prefill": sum(held),
        "blocks_held_per_group": held,
        "kv_bytes_held_after_prefill": held_bytes,
        "selection_layer": layer,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model path (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[6000, 8000], help="prompt lengths in tokens")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    from vllm import LLM

    from asl_vllm.embedded_model import materialize

    model = args.model or str(materialize())
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for name in args.configs:
        llm = LLM(
            model=model,
            max_model_len=max(args.lengths) + args.decode_tokens + 64,
            enforce_eager=True,
            seed=0,
            **CONFIGS[name],
        )
        results[name] = {}
        for length in args.lengths:
            measure(llm, length, 4, 1, f"warm-{length}")
            results[name][length] = measure(llm, length, args.decode_tokens, args.repeats, str(length))
        llm.llm_engine.engine_core.shutdown()
        del llm

    header = f"{'config':<16}{'tokens':>7}{'sel. layer':>11}{'blocks':>8}{'KV MiB':>8}{'x none':>8}"
    header += f"{'TTFT s':>9}{'x none':>8}{'TPOT ms':>9}{'x none':>8}"
    print(header)
    for name, by_length in results.items():
        for length, row in by_length.items():
            base = results["none"][length] if "none" in results else row
            print(
                f"{name:<16}{length:>7}{str(row['selection_layer']):>11}{row['blocks_held_after_prefill']:>8}"
                f"{row['kv_bytes_held_after_prefill'] / 2**20:>8.1f}"
                f"{row['kv_bytes_held_after_prefill'] / base['kv_bytes_held_after_prefill']:>8.2f}"
                f"{row['ttft_s']:>9.2f}{row['ttft_s'] / base['ttft_s']:>8.2f}"
                f"{row['tpot_s'] * 1000:>9.1f}{row['tpot_s'] / base['tpot_s']:>8.2f}"
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
