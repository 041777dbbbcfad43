"""How vLLM's CPU worker is made to build a plugin's model runner.

vLLM 0.32: `CPUWorker.init_device` (vllm/v1/worker/cpu_worker.py) has no
factory: it builds `CPUModelRunner` by that name in its module.
`building_cpu_runner` rebinds the name while a worker initializes (a worker
process builds one worker). Importing this module imports vLLM's CPU worker,
which patches torch for the CPU: only the CPU worker path imports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from vllm.v1.worker import cpu_worker


@contextlib.contextmanager
def building_cpu_runner(runner_class: type) -> Iterator[None]:
    """Within the block, vLLM's `CPUWorker.init_device` builds `runner_class` for its `CPUModelRunner`."""
    vllm_runner = cpu_worker.CPUModelRunner
    cpu_worker.CPUModelRunner = runner_class
    try:
        yield
    finally:
        cpu_worker.CPUModelRunner = vllm_runner
