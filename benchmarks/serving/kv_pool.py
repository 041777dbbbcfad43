"""The KV pool a benchmark server gets (`--kv-cache-memory-bytes`), sized in full requests.

The serving and pressure benchmarks give every server the same bytes, so what one pool
holds compares across pruners and layer-group layouts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def pool_bytes(model: str, requests: float, tokens: int, block_size: int) -> int:
    """A pool for `requests` full-KV requests of `tokens` tokens (whole blocks each), plus the block
    vLLM keeps out of the pool (its null block)."""
    return (math.ceil(requests * math.ceil(tokens / block_size)) + 1) * block_bytes(model, block_size)


def block_bytes(model: str, block_size: int) -> int:
    """Bytes of K and V one block of every layer holds (model dtype)."""
    config = json.loads((Path(model) / "config.json").read_text())
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    width = 4 if "32" in dtype else 2
    return 2 * config["num_hidden_layers"] * config.get("num_key_value_heads", 1) * head_dim * block_size * width
