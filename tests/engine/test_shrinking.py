"""The Shrinker without an engine: a shrink keeps exactly the tokens its stored scores choose, and moves nothing else.

The stack is a `DecoderStack` over vLLM's own `Attention` layers with the generated Llama's geometry
(`tests/engine/random_llama.py`: 8 layers, 4 query and 2 KV heads of 64), CPU_ATTN at ISA `vec` (16-token
blocks, which `amx` does not take: its pages are checked in `tests/kernels/test_backend_layouts.py`), one
paged cache per layer written by the backend's own `do_kv_cache_update` and shrunk by the torch compaction
(CPU tensors). A second request shares every cache, its blocks
interleaved with the shrunk one's. A plain topk/sort reference replays each shrink and writes the rows it
expects through the backend's op into a copy of the caches, so one whole-tensor equality per layer checks
the tail [D', N) in slot order and that nothing else moved: the head, the decode slots N + t, the other
request, the layers already at or past D'.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import LlamaConfig
from vllm.config import ModelConfig, VllmConfig, set_current_vllm_config
from vllm.model_executor.layers.attention import Attention

from asl_vllm.engine.decoder_stack import DecoderStack
from asl_vllm.engine.shrinking import Shrinker
from tests.engine.random_llama import HEAD_DIM, NUM_HEADS, NUM_KV_HEADS, NUM_LAYERS

BLOCK, WINDOW, DECODE = 16, 32, 5
GROUPS = [0, 0, 0, 1, 1, 1, 2, 2]  # KV cache group of each layer
BLOCKS_PER_REQUEST = 12
NUM_BLOCKS = 2 * BLOCKS_PER_REQUEST + 1  # block 0 unused, as vLLM's null block


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> DecoderStack:
    directory = tmp_path_factory.mktemp("generated-llama")
    LlamaConfig(
        vocab_size=256,
        hidden_size=NUM_HEADS * HEAD_DIM,
        intermediate_size=2 * NUM_HEADS * HEAD_DIM,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        head_dim=HEAD_DIM,
        architectures=["LlamaForCausalLM"],
        torch_dtype="float32",
    ).save_pretrained(directory)
    config = VllmConfig(model_config=ModelConfig(model=str(directory), skip_tokenizer_init=True, dtype="float32"))
    layers = []
    with set_current_vllm_config(config):
        for index in range(NUM_LAYERS):
            attention = Attention(
                NUM_HEADS,
                HEAD_DIM,
                HEAD_DIM**-0.5,
                num_kv_heads=NUM_KV_HEADS,
                prefix=f"model.layers.{index}.self_attn.attn",
            )
            attention.isa = "vec"
            layers.append(nn.ModuleDict({"self_attn": nn.ModuleDict({"attn": attention})}))
    stack = DecoderStack(SimpleNamespace(model=SimpleNamespace(layers=layers, norm=None, embed_input_ids=None)))
    assert stack.attentions[0].attn_backend.get_name() == "CPU_ATTN"
    return stack


def _slots(row: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return row[positions // BLOCK].long() * BLOCK + positions % BLOCK


def _write(attention, cache, keys, values, row, positions) -> None:
    attention.impl.do_kv_cache_update(attention, keys, values, cache, _slots(row, positions))


def _fill(stack, num_tokens: int, seed: int):
    """Fresh caches holding two requests' random K and V at slots [0, N + DECODE): -> (keys, values, rows)
    with keys[layer] the shrunk request's [N + DECODE, G, d] and rows[g] its block ids in group g."""
    generator = torch.Generator().manual_seed(seed)
    rows, others = [], []
    for _ in range(max(GROUPS) + 1):
        blocks = torch.randperm(NUM_BLOCKS - 1, generator=generator).int() + 1
        rows.append(blocks[:BLOCKS_PER_REQUEST])
        others.append(blocks[BLOCKS_PER_REQUEST:])
    positions = torch.arange(num_tokens + DECODE)
    shape = (NUM_LAYERS, 2, num_tokens + DECODE, NUM_KV_HEADS, HEAD_DIM)
    keys, values = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    for layer, attention in enumerate(stack.attentions):
        attention.kv_cache = torch.zeros(NUM_BLOCKS, NUM_KV_HEADS, BLOCK, 2 * HEAD_DIM)
        for request, row in enumerate((rows[GROUPS[layer]], others[GROUPS[layer]])):
            _write(attention, attention.kv_cache, keys[layer, request], values[layer, request], row, positions)
    return keys[:, 0], values[:, 0], rows


def _scores(num_rows: int, length: int, generator) -> torch.Tensor:
    """Distinct scores (no ties for the rule to break) of `length` kept past tokens, one row or one per KV head."""
    return torch.stack([torch.randperm(length, generator=generator).float() for _ in range(num_rows)])


def _reference_shrink(reference: list[dict], first_slot: int, num_tokens: int) -> None:
    """Per layer below first_slot: the best N - D' - w stored scores (topk), in slot order, then the window."""
    for entry in reference:
        if entry["offset"] >= first_slot:
            continue
        scores, tokens = entry["scores"], entry["tokens"]
        chosen = torch.topk(scores, num_tokens - first_slot - WINDOW, dim=1).indices.sort(dim=1).values
        past = tokens.gather(1, chosen.expand(NUM_KV_HEADS, -1))
        entry["tokens"] = torch.cat([past, tokens[:, tokens.shape[1] - WINDOW :]], dim=1)
        entry["scores"] = scores.gather(1, chosen)
        entry["offset"] = first_slot
        entry["moved"] = True


def _expected_caches(stack, reference, keys, values, rows, expected) -> None:
    """Write each shrunk layer's expected tail rows (token tokens[g][j] of head g at slot D' + j) into `expected`."""
    heads = torch.arange(NUM_KV_HEADS).view(1, -1)
    for layer, entry in enumerate(reference):
        if entry.pop("moved", False):
            tokens = entry["tokens"].T  # [N - D', G]
            tail = torch.arange(entry["offset"], entry["offset"] + tokens.shape[0])
            k, v = keys[layer][tokens, heads], values[layer][tokens, heads]
            _write(stack.attentions[layer], expected[layer], k, v, rows[GROUPS[layer]], tail)


def _assert_state(stack, shrinker, reference, expected) -> None:
    entry = shrinker.requests["a"]
    for layer, attention in enumerate(stack.attentions):
        assert torch.equal(attention.kv_cache, expected[layer]), f"layer {layer}"
        assert entry.layer_offsets[layer] == reference[layer]["offset"], f"layer {layer}"
        assert torch.equal(entry.scores[layer], reference[layer]["scores"]), f"layer {layer}"


@pytest.mark.parametrize("score_rows", [1, NUM_KV_HEADS], ids=["shared", "per_kv_head"])
@pytest.mark.parametrize("num_tokens", [150, 160])
def test_shrinks_keep_the_best_stored_tokens_in_slot_order_and_move_nothing_else(stack, score_rows, num_tokens):
    keys, values, rows = _fill(stack, num_tokens, seed=num_tokens + score_rows)
    generator = torch.Generator().manual_seed(score_rows)
    group_offsets = [0, 2 * BLOCK, 4 * BLOCK]
    offsets = [group_offsets[group] for group in GROUPS]
    scores = [_scores(score_rows, num_tokens - offset - WINDOW, generator) for offset in offsets]
    reference = [
        {"offset": offset, "scores": row, "tokens": torch.arange(offset, num_tokens).expand(NUM_KV_HEADS, -1)}
        for offset, row in zip(offsets, scores, strict=True)
    ]
    expected = [attention.kv_cache.clone() for attention in stack.attentions]
    shrinker = Shrinker(stack, GROUPS, BLOCK, WINDOW)
    shrinker.track("a", num_tokens, offsets, [row.clone() for row in scores])

    # Groups 0 and 1 (D = 0, 32) shrink to 48; group 2 (D = 64) already holds less.
    # Then every group shrinks to 96, groups 0 and 1 choosing from the scores the first shrink stored;
    # a shrink to a first slot every layer already reaches changes nothing.
    for first_slot, returned in ((3 * BLOCK, [48, 48, 64]), (6 * BLOCK, [96, 96, 96]), (5 * BLOCK, [96, 96, 96])):
        assert shrinker.shrink("a", first_slot, rows) == returned
        _reference_shrink(reference, first_slot, num_tokens)
        _expected_caches(stack, reference, keys, values, rows, expected)
        _assert_state(stack, shrinker, reference, expected)
    if score_rows == NUM_KV_HEADS:  # the per-head rule kept different tokens in different heads
        assert any(not torch.equal(entry["tokens"][0], entry["tokens"][1]) for entry in reference)


def test_a_window_covering_the_prompt_is_tracked_but_cannot_shrink(stack):
    num_tokens = WINDOW - 4
    _, _, rows = _fill(stack, num_tokens, seed=1)
    before = [attention.kv_cache.clone() for attention in stack.attentions]
    shrinker = Shrinker(stack, GROUPS, BLOCK, WINDOW)
    shrinker.track("a", num_tokens, [0] * NUM_LAYERS, [torch.zeros(1, 0)] * NUM_LAYERS)
    with pytest.raises(ValueError, match="below the window"):
        shrinker.shrink("a", BLOCK, rows)
    assert all(torch.equal(attention.kv_cache, before[layer]) for layer, attention in enumerate(stack.attentions))


def test_track_refuses_scores_that_do_not_match_the_kept_past_tokens(stack):
    shrinker = Shrinker(stack, GROUPS, BLOCK, WINDOW)
    offsets = [0] * NUM_LAYERS
    good = [torch.zeros(NUM_KV_HEADS, 100 - WINDOW)] * NUM_LAYERS
    with pytest.raises(AssertionError, match=r"^layer 3: kept scores \(2, 67\) do not match its 68"):
        shrinker.track("a", 100, offsets, [*good[:3], torch.zeros(NUM_KV_HEADS, 67), *good[4:]])
    with pytest.raises(AssertionError, match=r"^layer 0: kept scores None"):
        shrinker.track("a", 100, offsets, [None, *good[1:]])
    with pytest.raises(AssertionError, match="layer 5"):  # scores for D = 0 where layer 5 keeps from 16
        shrinker.track("a", 100, [0] * 5 + [BLOCK] * 3, good)
    with pytest.raises(ValueError):  # one layer's scores missing
        shrinker.track("a", 100, offsets, good[1:])
    assert "a" not in shrinker.requests


def test_untracked_and_discarded_requests_and_partial_blocks_are_refused(stack):
    num_tokens = 150
    _, _, rows = _fill(stack, num_tokens, seed=2)
    before = [attention.kv_cache.clone() for attention in stack.attentions]
    shrinker = Shrinker(stack, GROUPS, BLOCK, WINDOW)
    with pytest.raises(KeyError):
        shrinker.shrink("a", BLOCK, rows)
    shrinker.track("a", num_tokens, [0] * NUM_LAYERS, [torch.ones(1, num_tokens - WINDOW)] * NUM_LAYERS)
    for first_slot in (BLOCK + 1, 10 * BLOCK):  # not whole blocks; past the prompt (150)
        with pytest.raises(AssertionError, match="a shrunk head is whole blocks"):
            shrinker.shrink("a", first_slot, rows)
    shrinker.discard(["never-tracked", "a"])
    assert shrinker.requests == {}
    with pytest.raises(KeyError):
        shrinker.shrink("a", BLOCK, rows)
    assert all(torch.equal(attention.kv_cache, before[layer]) for layer, attention in enumerate(stack.attentions))
