"""The budget keeps, in each layer, exactly the tokens an independent computation gives, in every budget rule.

The engine prunes a prompt with `--kv-budget`; afterwards each layer's tail
slots are read from its KV cache. HF transformers, run on the same weights and
prompt, gives each layer's keys and window queries (RoPE applied); the scoring
core's reference rule (`budget_select`, over one layer's scores or, shared by
the layers, over `layer_shared_scores` of all of them) picks the tokens. Every key
the engine stored is matched to the HF key it equals: the engine's kept token
set per layer and KV head must be the reference's. Both in fp32, so the two
implementations' rounding cannot reorder near-tied scores.
"""

from __future__ import annotations

import pytest
import torch

from asl_vllm.budget import tail_offset
from asl_vllm.scoring import reference as ref
from asl_vllm.scoring.kv_layout import key_view, layer_layout
from asl_vllm.vllm_compat.kv_cache_managers import group_managers
from tests.engine.helpers import add_request, block_size, decisions, greedy, haystack_tokens, internal_id, scheduler

pytestmark = pytest.mark.slow

NUM_TOKENS, BUDGET, WINDOW, POOL = 1500, 512, 32, 7
# Layers whose kept tokens are read back; a layer-shared budget ranks by every layer's scores.
LAYERS = (0, 11, 29)


@pytest.fixture(scope="module")
def fp32_engine(engines):
    return engines(kv_pruner="snapkv", kv_budget=BUDGET, dtype="float32", max_model_len=2048)


@pytest.fixture(scope="module")
def hf_rows(model_path):
    """Every layer of HF transformers' fp32 forward: queries [N, H, d] and keys [N, G, d], RoPE applied."""
    from transformers import AutoModelForCausalLM
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32).eval()
    rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook_for(index: int):
        def hook(module, args, kwargs) -> None:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]  # [1, N, hidden]
            shape = (*hidden.shape[:-1], -1, module.head_dim)
            query = module.q_proj(hidden).view(shape).transpose(1, 2)  # [1, H, N, d]
            key = module.k_proj(hidden).view(shape).transpose(1, 2)  # [1, G, N, d]
            query, key = apply_rotary_pos_emb(query, key, *kwargs["position_embeddings"])
            rows[index] = (query[0].transpose(0, 1), key[0].transpose(0, 1))

        return hook

    for index, layer in enumerate(model.model.layers):
        layer.self_attn.register_forward_pre_hook(hook_for(index), with_kwargs=True)

    def run(token_ids: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        rows.clear()
        with torch.no_grad():
            model(torch.tensor([token_ids]))
        return dict(rows)

    return run


def _runner(llm):
    return llm.llm_engine.engine_core.engine_core.model_executor.driver_worker.worker.model_runner


def _stored_tokens(llm, req_id: str, layer: int, hf_keys: torch.Tensor, offset: int) -> torch.Tensor:
    """[G, N - offset]: the prompt index of the key the engine keeps in each tail slot of `layer`."""
    attention = _runner(llm).pruner_stack.attentions[layer]
    # A pruning engine's layout is always readable (hosts whose ISA is not are refused at configuration).
    keys = key_view(attention.kv_cache, layer_layout(attention))
    manager = group_managers(scheduler(llm).kv_cache_manager)[0]
    block_ids = [block.block_id for block in manager.req_to_blocks[internal_id(llm, req_id)]]
    bs = block_size(llm)
    slots = torch.arange(offset, NUM_TOKENS)
    stored = keys[torch.tensor(block_ids)[slots // bs], slots % bs].float()  # [K, G, d]
    # Each stored key is the HF key of one prompt token: the nearest one, per KV head.
    distance = torch.cdist(stored.transpose(0, 1), hf_keys.transpose(0, 1))  # [G, K, N]
    return distance.argmin(dim=-1)


def _reference_scores(rows: dict, layer: int, scale: float, heads: str) -> torch.Tensor:
    query, keys = rows[layer]
    pooled = ref.pool_scores(ref.window_histogram(query[-WINDOW:], keys, scale), POOL)
    per_kv_head = ref.kv_head_scores(pooled, keys.shape[1])
    return per_kv_head.sum(dim=0) if heads == "shared" else per_kv_head


@pytest.mark.parametrize("layers", ["shared", "per-layer"])
@pytest.mark.parametrize("heads", ["shared", "per-kv-head"])
def test_engine_keeps_the_reference_tokens(fp32_engine, hf_rows, heads, layers):
    llm = fp32_engine
    prompt = haystack_tokens(
        llm, NUM_TOKENS, needle="The special magic number is 7341928.", salt=f"Heads {heads}, layers {layers}. "
    )
    decisions(llm)
    req_id = f"heads-{heads}-layers-{layers}"
    # Still decoding when the cache is read: its blocks are held, its tail written by the prefill.
    add_request(llm, req_id, prompt, greedy(4, ignore_eos=True, kv_budget_heads=heads, kv_budget_layers=layers))
    llm.llm_engine.step()
    made = decisions(llm)[req_id]
    offset = tail_offset(NUM_TOKENS, BUDGET, block_size(llm))
    assert made["layer_offsets"] == [offset] * len(made["layer_offsets"])
    rows = hf_rows(prompt)
    scale = _runner(llm).pruner_stack.scale
    num_kv_heads = rows[0][1].shape[1]
    if layers == "shared":
        ranked = ref.layer_shared_scores([_reference_scores(rows, layer, scale, heads) for layer in sorted(rows)])
    kept = {}
    for layer in LAYERS:
        if layers == "per-layer":
            ranked = _reference_scores(rows, layer, scale, heads)
        expected = ref.budget_select(ranked, NUM_TOKENS, NUM_TOKENS - offset, WINDOW, num_kv_heads)
        kept[layer] = _stored_tokens(llm, req_id, layer, rows[layer][1], offset)
        assert torch.equal(kept[layer], expected), f"layer {layer}: {(kept[layer] != expected).sum().item()} differ"
    if heads == "shared":
        assert all(torch.equal(stored[0], row) for stored in kept.values() for row in stored)
    # Not vacuous: the per-layer rule keeps different tokens in different layers, the shared one the same.
    assert (len({tuple(stored.flatten().tolist()) for stored in kept.values()}) == 1) == (layers == "shared")
    while llm.llm_engine.has_unfinished_requests():
        llm.llm_engine.step()
