#!/usr/bin/env bash
# Perform the Dockerfile's install and start steps outside Docker, as the image would, and check
# the server: copy the build context that .dockerignore lets through, run docker/install.sh into a
# fresh virtual environment, start docker/entrypoint.sh on a free loopback port (as an unprivileged
# user when run as root), wait for the image's HEALTHCHECK command to pass, ask for one completion,
# then stop the server and remove everything it made.
#
# The model is materialized through $ASL_VLLM_CACHE (the user cache when unset, so a warm cache
# is reused) and copied with its file modes into the image's separate model directory.
# Usage: check_docker_steps.sh [cpu|cuda]   (default cpu; CHECK_TIMEOUT_S bounds the server's start)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
variant="${1:-cpu}"
timeout_s="${CHECK_TIMEOUT_S:-600}"
began=$SECONDS

say() { echo "check_docker_steps: $*" >&2; }

work="$(mktemp -d)"
server=""
# The server's process group (vLLM's engine runs in a child process), not counting exited ones.
server_alive() { ps -e -o pgid=,stat= | awk -v group="$server" '$1 == group && $2 !~ /^Z/ { found = 1 } END { exit !found }'; }
cleanup() {
    local stopping=$SECONDS
    if [ -n "$server" ]; then
        kill -TERM -- "-$server" 2>/dev/null || true
        for _ in $(seq 30); do server_alive || break; sleep 1; done
        kill -KILL -- "-$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        say "stopped the server in $((SECONDS - stopping)) s"
    fi
    rm -rf "$work"
    say "removed its files in $((SECONDS - stopping)) s"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
# The image's files are readable by its unprivileged user; so must be these.
chmod 755 "$work"

# 1. The build context, as `COPY . /src` sees it through the whitelist in .dockerignore.
context="$work/src"
mkdir -p "$context"
if [ "$(grep -v -e '^#' -e '^$' "$root/.dockerignore" | head -1)" != "*" ]; then
    say ".dockerignore must start by excluding everything ('*') for this check to mirror it"
    exit 1
fi
sed -n 's/^!//p' "$root/.dockerignore" | while read -r path; do
    mkdir -p "$context/$(dirname "$path")"
    cp -r "$root/$path" "$context/$path"
done
find "$context" -name __pycache__ -prune -exec rm -rf {} +
find "$context" -name '*.pyc' -delete

# The image serves as an unprivileged user: so does this check when run as root, with a Python
# that user can run (a per-user Python install is not, so the system's is tried next).
python="${PYTHON:-python3}"
as_user=()
if [ "$(id -u)" = 0 ]; then
    as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
    reachable=""
    for candidate in "$python" /usr/bin/python3; do
        real="$("$candidate" -c 'import sys; print(sys.executable)' 2>/dev/null)" || continue
        if "${as_user[@]}" bash -c '"$0" -c "import ensurepip"' "$real" 2>/dev/null; then
            reachable="$real" && break
        fi
    done
    if [ -n "$reachable" ]; then
        python="$reachable"
    else
        say "no Python that an unprivileged user can run: serving as root"
        as_user=()
    fi
fi

# 2. The install step: `RUN bash /src/docker/install.sh VARIANT VENV`.
venv="$work/opt/asl-vllm/venv"
model="$(PYTHON="$python" bash "$context/docker/install.sh" "$variant" "$venv")"
models="$work/opt/asl-vllm/models"
mkdir -p "$models"
cp -a "$model" "$models/"
say "installed in $((SECONDS - began)) s; model $(basename "$model")"

# 3. The start step: ENTRYPOINT with the image's environment, on a free loopback port.
port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
home="$work/home"
mkdir -p "$home"
if [ ${#as_user[@]} -gt 0 ]; then chown nobody "$home"; fi
log="$work/server.log"
env -i PATH="/usr/local/bin:/usr/bin:/bin" HOME="$home" \
    ASL_VLLM_VENV="$venv" ASL_VLLM_CACHE="$models" ASL_VLLM_HOST=127.0.0.1 ASL_VLLM_PORT="$port" \
    PYTHONUNBUFFERED=1 VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}" \
    setsid "${as_user[@]}" bash "$context/docker/entrypoint.sh" >"$log" 2>&1 &
server=$!
started=$SECONDS

# 4. The HEALTHCHECK command, until it passes.
until ASL_VLLM_PORT="$port" "$venv/bin/python" "$context/docker/healthcheck.py" 2>/dev/null; do
    if ! server_alive || [ $((SECONDS - started)) -ge "$timeout_s" ]; then
        say "the server did not become healthy within $((SECONDS - started)) s; its log ends:"
        tail -n 40 "$log" >&2
        exit 1
    fi
    sleep 2
done
say "serving as $("${as_user[@]}" id -un) with $python"
say "health: ok after $((SECONDS - started)) s on 127.0.0.1:$port"
grep '^asl-vllm: ' "$log" >&2

# 5. One completion through the OpenAI API.
"$venv/bin/python" - "$port" <<'EOF'
import json
import sys
import urllib.request

request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/v1/completions",
    data=json.dumps(
        {"model": "smollm2-135m-instruct", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
    ).encode(),
    headers={"Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=120) as response:
    text = json.load(response)["choices"][0]["text"]
if not text.strip():
    sys.exit("check_docker_steps: the completion is empty")
print(f"check_docker_steps: completion: {text!r}", file=sys.stderr)
EOF
say "passed in $((SECONDS - began)) s"
