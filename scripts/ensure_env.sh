#!/usr/bin/env bash
# Create or reuse the project's virtual environment, install what is missing,
# install the current source into it (editable), and print its path on stdout.
#
# The environment lives outside the clone, keyed by a hash of the files that
# decide its contents, so repeated runs and CI reuse it; ASL_VLLM_VENV overrides.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
key="$(cat "$root/setup.py" "$root/asl_vllm/vllm_compat/versions.py" "$root/scripts/ensure_env.sh" "$root/scripts/install_env.sh" | sha256sum | cut -c1-16)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/asl-vllm"
venv="${ASL_VLLM_VENV:-$cache/venv-$key}"
python="${PYTHON:-python3}"
# vLLM's CUDA build where a GPU driver answers, its CPU build elsewhere.
extra="cpu"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then extra="cuda"; fi

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
    echo "asl-vllm: creating $venv (vLLM $extra build; first run takes a few minutes)" >&2
    rm -rf "$venv"
    PYTHON="$python" bash "$root/scripts/install_env.sh" "$venv" "$extra,test,bench" >&2
    touch "$venv/.complete"
fi
# Editable: the environment runs this checkout, `kernels/` mapped to `asl_vllm.kernels` (setup.py's package_dir).
"$venv/bin/pip" install --quiet --no-deps --no-build-isolation --editable "$root" >&2
flock -u 9
echo "$venv"
