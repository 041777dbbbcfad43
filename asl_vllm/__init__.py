"""asl-vllm: layer-wise KV-cache token pruning with an adaptive selection layer.

Kept import-free: this package is imported by a .pth file at interpreter start
and by every vLLM process through the plugin entry point.
"""

__version__ = "0.1.0"
