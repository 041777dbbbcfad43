"""The KV pool the serving and pressure benchmarks give every server."""

import json

from benchmarks.serving.kv_pool import block_bytes, pool_bytes

# SmolLM2-135M-Instruct's shape: 30 layers, 3 KV heads of 64 dimensions.
SMOLLM2 = {"hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3, "num_hidden_layers": 30}


def model_dir(tmp_path, **overrides):
    (tmp_path / "config.json").write_text(json.dumps({**SMOLLM2, **overrides}))
    return str(tmp_path)


def test_a_block_holds_k_and_v_of_every_layer(tmp_path):
    assert block_bytes(model_dir(tmp_path, torch_dtype="bfloat16"), 128) == 2 * 30 * 3 * 64 * 128 * 2
    assert block_bytes(model_dir(tmp_path, torch_dtype="float32"), 16) == 2 * 30 * 3 * 64 * 16 * 4


def test_the_pool_holds_whole_blocks_of_full_requests_and_the_null_block(tmp_path):
    model = model_dir(tmp_path)
    block = block_bytes(model, 128)
    # Pressure's default: 4 requests of 6,000 prompt and 12 answer tokens, 47 blocks each.
    assert pool_bytes(model, 4, 6012, 128) == (4 * 47 + 1) * block
    # A pool for a fractional number of requests rounds up to a whole block.
    assert pool_bytes(model, 2.5, 6012, 128) == (118 + 1) * block
    # Serving's full preset: 2 requests of 4,000 tokens and 8 + 16 decode tokens, 32 blocks each.
    assert pool_bytes(model, 2, 4024, 128) == (2 * 32 + 1) * block
