#!/usr/bin/env bash
# The image's start step (its ENTRYPOINT; scripts/check_docker_steps.sh runs it outside Docker):
# vLLM's OpenAI server on the baked-in embedded model with --kv-pruner asl, listening on
# $ASL_VLLM_HOST:$ASL_VLLM_PORT (0.0.0.0:8000). Arguments go to `vllm serve` (e.g. --kv-budget 1024).
set -euo pipefail
# The model is baked in: never wait on a model hub, reachable or not.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec "${ASL_VLLM_VENV:?set ASL_VLLM_VENV to the environment docker/install.sh made}/bin/asl-vllm-serve" \
    --host "${ASL_VLLM_HOST:-0.0.0.0}" --port "${ASL_VLLM_PORT:-8000}" "$@"
