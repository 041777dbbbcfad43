"""vLLM's own `additional_config` carries the pruner settings with no start-up hook at all.

`LLM(model, kv_pruner=...)` needs the start-up hook, because vLLM 0.32 loads
general plugins only in `EngineArgs.__post_init__`, after the dataclass
`__init__` has refused unknown keywords. `additional_config={"kv_pruner": {...}}`
is a field vLLM declares, so the plugin's entry point alone turns it into a
pruning engine config: checked in a fresh interpreter with the hook's import
finder removed before vLLM is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

_SCRIPT = """
import json, sys
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_PatchAfterImport"]
from vllm.engine.arg_utils import EngineArgs
try:
    EngineArgs(model=sys.argv[1], kv_pruner="asl")
    raise SystemExit("the keyword form worked without the start-up hook")
except TypeError:
    pass
settings = {"pruner": "asl", "kv_budget": 1024, "tau": 0.4}
config = EngineArgs(model=sys.argv[1], max_model_len=4096, additional_config={"kv_pruner": settings})
vllm_config = config.create_engine_config()
print(json.dumps({
    "pruner": vllm_config.additional_config["kv_pruner"],
    "worker_cls": vllm_config.parallel_config.worker_cls,
    "scheduler_cls": str(vllm_config.scheduler_config.scheduler_cls),
}))
"""


def test_additional_config_makes_a_pruning_engine_without_the_startup_hook(model_path):
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, model_path], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    made = json.loads(result.stdout.strip().splitlines()[-1])
    assert made["pruner"]["pruner"] == "asl"
    assert made["pruner"]["kv_budget"] == 1024
    assert made["pruner"]["tau"] == 0.4
    assert made["worker_cls"].endswith("PruningCPUWorker")
    assert made["scheduler_cls"].endswith("PruningScheduler")
