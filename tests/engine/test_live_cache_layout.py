"""Window scores read from a live CPU engine's KV cache after a real prefill, against the model's own q and k.

During the prefill, one layer's attention call is observed: its query and key
rows (RoPE applied, as the model computed them) and its block table. After
the request, the scores are computed three ways: from those dense rows (the
reference), and from the engine's cache tensor through `kv_layout`, by the
torch path and, for the strided layouts it reads (not `amx` tiles, which only
CPU engines write and only the torch path reads), by the Triton kernel in the
interpreter.
"""

from __future__ import annotations

import pytest
import torch
from vllm import SamplingParams
from vllm.inputs import TokensPrompt

from asl_vllm.kernels import window_scores
from asl_vllm.scoring import paged
from asl_vllm.scoring import reference as ref
from asl_vllm.scoring.kv_layout import CPU_ISAS, key_view, layer_layout
from tests.engine.helpers import haystack_tokens

pytestmark = pytest.mark.slow

WINDOW = 32
LAYER = "model.layers.7.self_attn.attn"


def _model_runner(llm):
    return llm.llm_engine.engine_core.engine_core.model_executor.driver_worker.worker.model_runner


def test_window_scores_from_the_engines_cache(engines, monkeypatch):
    llm = engines()
    layer = _model_runner(llm).compilation_config.static_forward_context[LAYER]
    seen = {}
    forward = layer.impl.forward

    def observe(attn_layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs):
        if attn_metadata is not None and not seen:
            rows = attn_metadata.num_actual_tokens
            seen.update(
                query=query[:rows].clone(),
                key=key[:rows].clone(),
                block_table=attn_metadata.block_table[:1].clone(),
                seq_len=int(attn_metadata.seq_lens[0]),
            )
        return forward(attn_layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)

    monkeypatch.setattr(layer.impl, "forward", observe)
    prompt = haystack_tokens(llm, 300, salt="cache layout probe ")
    llm.generate(TokensPrompt(prompt_token_ids=prompt), SamplingParams(max_tokens=1, temperature=0.0), use_tqdm=False)

    num_tokens = len(prompt)
    assert seen["seq_len"] == num_tokens == seen["key"].shape[0]
    if layer.isa not in CPU_ISAS:
        # An engine without a pruner keeps vLLM's ISA whatever it is (`neon` on ARM), which the kernels do not read.
        pytest.skip(f"this machine's CPU attention runs {layer.isa!r}, whose pages are not read")
    layout = layer_layout(layer)
    q_win = seen["query"][-WINDOW:].unsqueeze(0)
    scale = layer.impl.scale
    seq_lens = torch.tensor([num_tokens], dtype=torch.int32)
    expected = ref.window_histogram(q_win[0], seen["key"], scale)

    keys = key_view(layer.kv_cache, layout)
    assert keys.shape[1:] == (keys.shape[1], seen["key"].shape[1], seen["key"].shape[2])
    from_cache = paged.paged_window_histogram(q_win, layer.kv_cache, seen["block_table"], seq_lens, scale, layout)
    torch.testing.assert_close(from_cache[0], expected, atol=1e-5, rtol=1e-5)
    if layout.cpu_isa == "amx":
        return
    by_kernel = window_scores.paged_window_histogram(
        q_win, layer.kv_cache, seen["block_table"], seq_lens, scale, layout
    )
    torch.testing.assert_close(by_kernel[0], expected, atol=1e-4, rtol=1e-4)
