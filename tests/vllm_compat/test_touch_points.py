"""Every vLLM internal the plugin uses lives in `asl_vllm.vllm_compat`, whose docstring lists each module.

Outside the package: no private attribute of another object is read, no method
overrides a private one of a vLLM base class, no vLLM object or module gets an
attribute assigned, and no environment variable is set.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import asl_vllm
from asl_vllm import vllm_compat

COMPAT = "asl_vllm.vllm_compat"
# Set by Python itself on every class of an ABC hierarchy.
PYTHON_PRIVATE = {"_abc_impl"}


def _modules_outside_compat() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(asl_vllm.__path__, "asl_vllm.")]
    return [name for name in names if not name.startswith((COMPAT, "asl_vllm.kernels"))]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PYTHON_PRIVATE


def test_the_package_docstring_names_every_compat_module():
    for info in pkgutil.iter_modules(vllm_compat.__path__):
        assert f"`{info.name}" in vllm_compat.__doc__, info.name


@pytest.mark.parametrize("module_name", _modules_outside_compat())
def test_no_private_vllm_method_is_overridden_outside_compat(module_name):
    module = importlib.import_module(module_name)
    for cls in vars(module).values():
        if not inspect.isclass(cls) or cls.__module__ != module_name:
            continue
        vllm_bases = [base for base in cls.__mro__ if base.__module__.startswith("vllm.")]
        ours = [base for base in cls.__mro__ if base.__module__.startswith("asl_vllm.")]
        for base in ours:
            if base.__module__.startswith(COMPAT):
                continue
            for name in filter(_is_private, vars(base)):
                overridden = [vllm.__qualname__ for vllm in vllm_bases if name in vars(vllm)]
                assert not overridden, f"{base.__qualname__}.{name} overrides {overridden}"


def _source_files_outside_compat() -> list[Path]:
    root = Path(asl_vllm.__file__).parent
    return [path for path in sorted(root.rglob("*.py")) if (root / "vllm_compat") not in path.parents]


def _vllm_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vllm":
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(
                (alias.asname or alias.name).split(".")[0] for alias in node.names if alias.name.startswith("vllm")
            )
    return names


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


@pytest.mark.parametrize("path", _source_files_outside_compat(), ids=lambda path: path.name)
def test_no_vllm_internal_is_touched_outside_compat(path):
    tree = ast.parse(path.read_text())
    vllm_names = _vllm_names(tree)
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            assert isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"), f"{where}: .{node.attr}"
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            assert not (isinstance(node.value, ast.Name) and node.value.id in vllm_names), f"{where}: patches vLLM"
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)):
            assert not _is_environ(node.value), f"{where}: sets an environment variable"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
            target = node.args[0] if node.args else None
            assert not (isinstance(target, ast.Name) and target.id in vllm_names), f"{where}: patches vLLM"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            writes = node.func.attr in ("setdefault", "update", "pop", "clear") and _is_environ(node.func.value)
            assert not writes and node.func.attr != "putenv", f"{where}: sets an environment variable"
