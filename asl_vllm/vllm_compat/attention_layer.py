"""What the scoring of a chunked prompt reads from a vLLM attention layer besides its cache.

vLLM 0.32, `Attention` (vllm/model_executor/layers/attention/attention.py):
`_k_scale_float`, the per-tensor scale its backends dequantize an fp8 K cache
with (1.0 for an unquantized cache), set with the layer's quantization scales.
"""

from __future__ import annotations

from typing import Any


def key_scale(layer: Any) -> float:
    """The scale the layer's cached keys are stored with (the scoring operation multiplies them back)."""
    return float(layer._k_scale_float)
