"""A `vllm serve` process on loopback for the serving benchmark: start, wait, read /metrics, stop.

A server that exits before it answers /health (a refused flag, e.g. a pruner this
version does not run yet) is reported with the error line from its log instead of
raising, so the benchmark records the pruner as not available.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SERVED_NAME = "bench"
CHECKOUT = Path(__file__).resolve().parents[2]
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


class ServerRefused(RuntimeError):
    """The server stopped before it was ready; the message is its error line."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vllm_command() -> list[str]:
    """The `vllm` command of this environment (the plugin makes it start on the CPU build too)."""
    beside = Path(sys.executable).with_name("vllm")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "vllm.entrypoints.cli.main"]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server's own session: API server + engine core
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Prometheus samples by metric name: [(labels, value)]."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=30) as response:
            text = response.read().decode()
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match and not line.startswith("#"):
                labels = dict(_LABEL.findall(match.group(2) or ""))
                samples.setdefault(match.group(1), []).append((labels, float(match.group(3))))
        return samples

    def gauge(self, name: str) -> float:
        """A metric summed over its label sets (one engine: its one value); 0 when absent."""
        return sum(value for _, value in self.metrics().get(name, []))


def start(model: str, flags: list[str], log_path: Path, max_model_len: int, timeout_s: float = 900) -> Server:
    """Start `vllm serve MODEL ...` and wait for /health; raises ServerRefused with its error line."""
    port = free_port()
    command = [
        *vllm_command(),
        "serve",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--served-model-name",
        SERVED_NAME,
        "--max-model-len",
        str(max_model_len),
        *flags,
    ]
    env = server_environment(flags)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerRefused(error_line(log_path))
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(1)
    server.stop()
    raise ServerRefused(f"not ready after {timeout_s:.0f} s")


def server_environment(flags: list[str]) -> dict[str, str]:
    """This environment, with this checkout first on the server's import path (the server runs the
    plugin code being benchmarked) and the CPU build's KV size variable, which overrides
    --kv-cache-memory-bytes, left out when that flag is given (else 1 GiB)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH")]))
    if "--kv-cache-memory-bytes" in flags:
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    else:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return env


def error_line(log_path: Path) -> str:
    """The line that says why a server stopped: the last 'error:' or exception line of its log."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("error:", "vllm serve: error")) or re.match(r"^\w+(Error|Exception)\b", line):
            return line
    return lines[-1] if lines else "exited before it was ready"
