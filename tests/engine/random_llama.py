"""A small Llama checkpoint with random weights whose head counts split over two tensor-parallel ranks.

The embedded model's 9 query and 3 KV heads do not divide by 2. This one has
4 query and 2 KV heads, fp32 weights, and two properties a random model lacks,
so that the equality of tensor-parallel and single-rank decisions does not rest
on rounding (tensor parallelism sums heads and layer outputs in another order):
- peaked attention: query and key projections are scaled up, so window scores
  differ widely between tokens, where near-uniform attention would leave
  near-ties for rounding to reorder;
- ranks that settle with depth, as ASL expects of a trained model: every
  layer's query and key projections are one shared matrix plus a perturbation,
  and each layer's output projections (attention and MLP) are scaled, both by
  DECAY ** layer, so deeper layers attend alike and the rank variance falls
  layer after layer, far from any tau at the layers that select.
"""

from __future__ import annotations

from pathlib import Path

import torch

NUM_LAYERS = 8
NUM_HEADS = 4
NUM_KV_HEADS = 2
HEAD_DIM = 64
# Standard deviation of the query and key projections: logits q.k / sqrt(d) of about +-4.
QK_STD = 0.125
DECAY = 0.5


def write_random_llama(directory: Path, tokenizer_dir: str, seed: int = 0) -> Path:
    """Save the checkpoint and `tokenizer_dir`'s tokenizer into `directory`; returns it."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    hidden = NUM_HEADS * HEAD_DIM
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=4096,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    hidden_std = hidden**-0.5
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0.0, 1.0)
        shared = {
            name: torch.randn(dims) * QK_STD
            for name, dims in (("q_proj", (hidden, hidden)), ("k_proj", (NUM_KV_HEADS * HEAD_DIM, hidden)))
        }
        for index, layer in enumerate(model.model.layers):
            scale = DECAY**index
            attention, mlp = layer.self_attn, layer.mlp
            for name, base in shared.items():
                getattr(attention, name).weight.copy_(base + torch.randn_like(base) * QK_STD * scale)
            attention.v_proj.weight.normal_(0.0, hidden_std)
            attention.o_proj.weight.normal_(0.0, hidden_std * scale)
            mlp.gate_proj.weight.normal_(0.0, hidden_std)
            mlp.up_proj.weight.normal_(0.0, hidden_std)
            mlp.down_proj.weight.normal_(0.0, (2 * hidden) ** -0.5 * scale)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory
