#!/usr/bin/env bash
# Run the test suite in the project's environment (installing what is missing first).
# Extra arguments go to pytest (e.g. -m "not slow", -k cli).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/ensure_env.sh")"
cd "$root"
exec "$venv/bin/python" -m pytest "$@"
