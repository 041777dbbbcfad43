"""The supported vLLM releases, the install requirement built from them, and the adaptations that depend on them."""

from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet

from asl_vllm.vllm_compat import stream_generators, versions


def test_the_cuda_requirement_admits_every_checked_release_and_no_later_minor():
    requirement = SpecifierSet(versions.CUDA_REQUIREMENT)
    assert all(version in requirement for version in versions.CUDA_VERSIONS)
    newest = versions.release(versions.CUDA_VERSIONS[-1])
    assert f"{newest[0]}.{newest[1] + 1}.0" not in requirement


def test_the_cpu_release_is_among_the_checked_ones():
    """The CPU build's touch points are checked with the CUDA wheel of the same release."""
    assert versions.CPU_VERSION in versions.CUDA_VERSIONS


def test_a_local_tag_does_not_change_the_release():
    assert versions.release("0.32.0+cpu") == (0, 32, 0)


@pytest.mark.parametrize(("installed", "wrapped"), [((0, 32, 0), 2), ((0, 33, 0), 0), ((0, 33, 1), 0)])
def test_stream_generators_are_wrapped_only_where_vllm_drops_the_params(monkeypatch, installed, wrapped):
    calls = []
    monkeypatch.setattr(versions, "installed", lambda: installed)
    monkeypatch.setattr(stream_generators, "_wrap_stream_generator", lambda *args, **kwargs: calls.append(args))
    stream_generators.wrap_stream_generators()
    assert len(calls) == wrapped
