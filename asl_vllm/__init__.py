"""asl-vllm: layer-wise KV-cache token pruning with an adaptive selection layer.

Kept import-light: every vLLM process imports it through the plugin entry point.
`asl_vllm.kernels` lives in the top-level `kernels/` folder; setup.py's package_dir
installs it there (an editable install maps it for a checkout).
"""

__version__ = "0.1.0"
