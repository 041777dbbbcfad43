"""Plain-HTTP helpers for the server tests: OpenAI requests, streams, hang-ups and /metrics readings."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import requests

MODEL = "smollm2"


def post(url: str, path: str, body: dict[str, Any], timeout: float = 300) -> requests.Response:
    """POST the body as JSON text (json.dumps writes NaN and Infinity, as many clients do)."""
    return requests.post(
        f"{url}{path}", data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=timeout
    )


def stream_events(url: str, path: str, body: dict[str, Any], timeout: float = 300) -> tuple[int, list[Any]]:
    """POST a streaming request; (status, decoded `data:` events, "[DONE]" kept as the string)."""
    with requests.post(f"{url}{path}", json=body, stream=True, timeout=timeout) as reply:
        if reply.status_code != 200:
            return reply.status_code, [reply.text]
        events: list[Any] = []
        for line in reply.iter_lines(decode_unicode=True):
            if line and line.startswith("data: "):
                payload = line.removeprefix("data: ")
                events.append(payload if payload == "[DONE]" else json.loads(payload))
        return reply.status_code, events


def hang_up(url: str, path: str, body: dict[str, Any], after_s: float = 0.0, read_bytes: int = 0) -> bytes:
    """Send a request on a raw socket, read `read_bytes` of the answer (or wait `after_s`), then close it."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    received = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=300) as sock:
        sock.sendall(head + payload)
        while len(received) < read_bytes:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        time.sleep(after_s)
    return received


def metrics(url: str) -> dict[str, float]:
    """/metrics as {name{labels}: value}, plus each name summed over its label sets."""
    values: dict[str, float] = {}
    for line in requests.get(f"{url}/metrics", timeout=30).text.splitlines():
        if not line.startswith("vllm:"):
            continue
        series, value = line.rsplit(" ", 1)
        values[series] = float(value)
        name = series.split("{", 1)[0]
        values[name] = values.get(name, 0.0) + float(value)
    return values


def finished_count(readings: dict[str, float], reason: str) -> float:
    """Requests the engine finished with `reason` (stop, length, abort, error, ...) so far."""
    prefix = "vllm:request_success_total{"
    return sum(value for series, value in readings.items() if series.startswith(prefix) and f'"{reason}"' in series)


def wait_until_idle(url: str, timeout_s: float = 120) -> dict[str, float]:
    """/metrics once no request is running or waiting; fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        readings = metrics(url)
        if readings["vllm:num_requests_running"] == 0 and readings["vllm:num_requests_waiting"] == 0:
            return readings
        assert time.monotonic() < deadline, f"requests still in flight: {readings}"
        time.sleep(0.5)
