"""The mark that makes each of this package's wrappers of a vLLM function install once per process.

vLLM loads general plugins several times per process (`load_general_plugins`,
`EngineArgs.__post_init__`), and the start-up hook may have wrapped a function
before the plugin runs: a wrapper checks the mark before wrapping again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

_MARK = "_asl_vllm_patched"

F = TypeVar("F", bound=Callable[..., Any])


def is_patched(function: Any) -> bool:
    """Whether `function` (a plain, bound or unwrapped static function) is one of this package's wrappers."""
    return getattr(function, _MARK, False)


def marked(function: F) -> F:
    """`function`, marked as this package's wrapper."""
    setattr(function, _MARK, True)
    return function
