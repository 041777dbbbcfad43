"""The budget keeps, in each layer, exactly the tokens an independent computation gives, in both head modes.

The engine prunes a prompt with `--kv-budget`; afterwards each layer's tail
slots are read from its KV cache. HF transformers, run on the same weights and
prompt, gives each layer's keys and window queries (RoPE applied); the scoring
core's reference rule (`budget_select`) picks the tokens from those. Every key
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
LAYERS = (0, 11, 29)


@pytest.fixture(scope="module")
def fp32_engine(engines):
    return engines(kv_pruner="snapkv", kv_budget=BUDGET, dtype="float32", max_model_len=2048)


@pytest.fixture(scope="module")
def hf_rows(model_path):
    """Per layer of HF transformers' fp32 forward: queries [N, H, d] and keys [N, G, d], RoPE applied."""
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

    for index in LAYERS:
        model.model.layers[index].self_attn.register_forward_pre_hook(hook_for(index), with_kwargs=True)

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
    try:
        keys = key_view(attention.kv_cache, layer_layout(attention))
    except ValueError as error:
        pytest.skip(f"this machine's CPU attention stores K packed: {error}")
    manager = group_managers(scheduler(llm).kv_cache_manager)[0]
    block_ids = [block.block_id for block in manager.req_to_blocks[internal_id(llm, req_id)]]
    bs = block_size(llm)
    slots = torch.arange(offset, NUM_TOKENS)
    stored = keys[torch.tensor(block_ids)[slots // bs], slots % bs].float()  # [K, G, d]
    # Each stored key is the HF key of one prompt token: the nearest one, per KV head.
    distance = torch.cdist(stored.transpose(0, 1), hf_keys.transpose(0, 1))  # [G, K, N]
    return distance.argmin(dim=-1)


@pytest.mark.parametrize("heads", ["shared", "per-kv-head"])
def test_engine_keeps_the_reference_tokens(fp32_engine, hf_rows, heads):
    llm = fp32_engine
    prompt = haystack_tokens(llm, NUM_TOKENS, needle="The special magic number is 7341928.", salt=f"Heads {heads}. ")
    decisions(llm)
    req_id = f"heads-{heads}"
    # Still decoding when the cache is read: its blocks are held, its tail written by the prefill.
    add_request(llm, req_id, prompt, greedy(4, ignore_eos=True, kv_budget_heads=heads))
    llm.llm_engine.step()
    made = decisions(llm)[req_id]
    offset = tail_offset(NUM_TOKENS, BUDGET, block_size(llm))
    assert made["layer_offsets"] == [offset] * len(made["layer_offsets"])
    rows = hf_rows(prompt)
    for layer in LAYERS:
        query, keys = rows[layer]
        scale = _runner(llm).pruner_stack.scale
        pooled = ref.pool_scores(ref.window_histogram(query[-WINDOW:], keys, scale), POOL)
        per_kv_head = ref.kv_head_scores(pooled, keys.shape[1])
        ranked = per_kv_head.sum(dim=0) if heads == "shared" else per_kv_head
        expected = ref.budget_select(ranked, NUM_TOKENS, NUM_TOKENS - offset, WINDOW, keys.shape[1])
        stored = _stored_tokens(llm, req_id, layer, keys, offset)
        assert torch.equal(stored, expected), f"layer {layer}: {(stored != expected).sum().item()} slots differ"
    if heads == "shared":
        assert all(torch.equal(stored[0], row) for row in stored)
    while llm.llm_engine.has_unfinished_requests():
        llm.llm_engine.step()
