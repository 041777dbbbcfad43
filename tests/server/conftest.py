"""A real `vllm serve` process on the embedded model, shared by the server tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

STARTUP_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    model_path: str, *args: str, log_path: Path, max_model_len: int = 8192
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    log = open(log_path, "w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("vllm")),
            "serve",
            model_path,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            "smollm2",
            "--max-model-len",
            str(max_model_len),
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(1)
    process.terminate()
    raise RuntimeError(f"server did not become healthy:\n{log_path.read_text()[-3000:]}")


@contextmanager
def running_server(model_path: str, *args: str, log_path: Path, max_model_len: int = 8192) -> Iterator[str]:
    """A `vllm serve` process for the block's duration; yields its base URL."""
    process, url = start_server(model_path, *args, log_path=log_path, max_model_len=max_model_len)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def asl_server(model_path, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("server") / "vllm-serve.log"
    with running_server(model_path, "--kv-pruner", "asl", "--kv-budget", "1024", log_path=log_path) as url:
        yield url, log_path
