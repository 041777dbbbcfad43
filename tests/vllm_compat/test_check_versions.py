"""The touch-point check: what it detects in a source tree, and that every supported vLLM release passes it.

The release checks fetch each `vllm` wheel once into the user's cache (about
300 MB each, seconds on a fast link) and read it with `ast`; an unreachable
registry fails them (`FetchError`), it never skips them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import vllm

from asl_vllm.vllm_compat import check_versions, touch_points, versions
from asl_vllm.vllm_compat.check_versions import Sources, problem
from asl_vllm.vllm_compat.touch_points import TouchPoint

FAKE_MODULE = """
import os

Runner = None


class Base:
    def step(self, request, tokens, *, eager=False):
        self.ready = True


class Worker(Base):
    size: int = 0

    def __init__(self):
        self.pool = []
        self.first, self.rest = make_parts()

    @staticmethod
    def command(args):
        pass
"""


@pytest.fixture
def fake_sources(tmp_path: Path) -> Sources:
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text("")
    (tmp_path / "vllm" / "worker.py").write_text(FAKE_MODULE)
    (tmp_path / "vllm" / "envs.py").write_text('environment_variables = {"VLLM_X": lambda: 1}\n')
    (tmp_path / "vllm" / "_version.py").write_text("__version__ = version = '0.40.1'\n")
    return Sources(tmp_path)


def _function(name: str, *positional: str, keywords: tuple[str, ...] = ()) -> TouchPoint:
    return TouchPoint("function", "vllm.worker", name, "test", positional=positional, keywords=keywords)


def _attribute(name: str, assigned_in: str) -> TouchPoint:
    return TouchPoint("attribute", "vllm.worker", name, "test", assigned_in=assigned_in)


@pytest.mark.parametrize(
    "point",
    [
        _function("Worker.step", "request", "tokens", keywords=("eager",)),  # inherited from a base in the module
        _function("Worker.command", "args"),  # a static method has no self to skip
        _attribute("Worker.pool", "Worker.__init__"),
        _attribute("Worker.rest", "Worker.__init__"),  # one element of a tuple assignment
        _attribute("Worker.size", "Worker"),
        _attribute("Base.ready", "Base.step"),
        _attribute("Runner", ""),
        TouchPoint("defined", "vllm.worker", "Worker", "test"),
        TouchPoint("env", "vllm.envs", "VLLM_X", "test"),
    ],
    ids=str,
)
def test_what_holds_passes(fake_sources, point):
    assert problem(fake_sources, point) is None


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (_function("Worker.step", "tokens"), "parameters (request, tokens), expected (tokens, ...)"),
        (_function("Worker.step", keywords=("force",)), "lacks parameters force"),
        (_function("Worker.gone"), "missing"),
        (_function("Worker.size"), "is not a function"),
        (TouchPoint("function", "vllm.gone", "f", "test"), "module missing"),
        (_attribute("Worker.pool", "Worker.step"), "not assigned in Worker.step"),
        (_attribute("Worker.pool", "Worker.start"), "Worker.start missing"),
        (TouchPoint("env", "vllm.envs", "VLLM_Y", "test"), "not read by vLLM"),
    ],
    ids=lambda value: str(value) if isinstance(value, TouchPoint) else "",
)
def test_what_changed_is_reported(fake_sources, point, message):
    assert problem(fake_sources, point) == message


def test_a_trees_release_is_read_from_its_version_file(fake_sources):
    assert fake_sources.version() == "0.40.1"


def test_a_touch_point_applies_to_the_releases_it_names():
    point = TouchPoint("function", "vllm.x", "f", "test", since="0.33.0", before="0.34.0")
    assert [check_versions.applies(point, v) for v in ("0.32.0", "0.33.0", "0.33.2", "0.34.0")] == [
        False,
        True,
        True,
        False,
    ]
    cpu = TouchPoint("function", "vllm.x", "f", "test", cpu_only=True)
    assert check_versions.applies(cpu, versions.CPU_VERSION)
    assert not check_versions.applies(cpu, "0.33.0")


def test_every_touch_point_names_a_compat_module():
    names = {path.stem for path in Path(touch_points.__file__).parent.glob("*.py")}
    assert {point.user for point in touch_points.TOUCH_POINTS} <= names


def test_the_installed_vllm_passes():
    """The installed build (the CPU build in development) read from its own files, without a download."""
    sources = Sources(Path(vllm.__file__).parent.parent)
    assert check_versions.check(sources, sources.version()) == []


@pytest.mark.parametrize("version", versions.CUDA_VERSIONS)
def test_every_supported_cuda_release_passes(version):
    wheel = check_versions.fetch_wheel(version)
    assert wheel.parent == check_versions.wheel_cache()
    assert check_versions.check(Sources(wheel), version) == []
