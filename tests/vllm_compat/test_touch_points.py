"""Every vLLM internal the plugin uses lives in `asl_vllm.vllm_compat`, whose docstring lists each module.

Outside the package: no private attribute of another object is read, no method
overrides a private one of a vLLM base class, no vLLM object or module gets an
attribute assigned, and no environment variable is set. Nor is the state a
vLLM object keeps for itself read, where its name looks public: neither by the
names of that state (`VLLM_STATE`), nor on `self` in a subclass of a vLLM
class (what vLLM's own methods of the class assign on `self`, except the
configuration it was built with: `BUILT_WITH`); and no `CommonAttentionMetadata`
is built. The package itself imports nothing from `asl_vllm.engine`.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
import textwrap
from pathlib import Path

import pytest

import asl_vllm
from asl_vllm import vllm_compat

COMPAT = "asl_vllm.vllm_compat"
# Set by Python itself on every class of an ABC hierarchy.
PYTHON_PRIVATE = {"_abc_impl"}
# State vLLM objects keep for themselves, by name: read through a compat module only.
VLLM_STATE = {
    # GPUModelRunner and its InputBatch (`input_batch`, `model_runner`, `cpu_sampling`).
    "input_batch",
    "query_start_loc",
    "attn_groups",
    "req_ids",
    "req_indices",
    "num_computed_tokens_cpu",
    "num_computed_tokens_cpu_tensor",
    "num_prompt_tokens_cpu_tensor",
    "block_tables",
    "get_device_tensor",
    "block_ids",
    "discard_request_mask",
    # Scheduler, KV cache managers and their block pool (`scheduler_state`, `kv_cache_managers`).
    "kv_cache_manager",
    "usage",
    "coordinator",
    "single_type_managers",
    "block_pool",
    "get_num_free_blocks",
    # Attention layers and the models holding them (`attention_layer`, `decoder_model`).
    "impl",
    "attn_backend",
    "kv_cache",
    "do_kv_cache_update",
    "embed_input_ids",
}
# What a vLLM object keeps of the configuration it was built with, and objects the plugin built itself:
# readable on `self` in a subclass.
BUILT_WITH = {
    "vllm_config",
    "model_config",
    "scheduler_config",
    "compilation_config",
    "kv_cache_config",
    "device",
    "max_num_reqs",
    "max_num_tokens",
    "max_model_len",
    "max_num_scheduled_tokens",
    # A KV cache manager's block size (its group's spec's).
    "block_size",
    # The model the runner loaded, and the runner a worker built (the plugin's own, through vLLM's factory).
    "model",
    "model_runner",
}


def _modules_outside_compat() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(asl_vllm.__path__, "asl_vllm.")]
    return [name for name in names if not name.startswith((COMPAT, "asl_vllm.kernels"))]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PYTHON_PRIVATE


def test_the_package_docstring_names_every_compat_module():
    for info in pkgutil.iter_modules(vllm_compat.__path__):
        assert f"`{info.name}" in vllm_compat.__doc__, info.name


def _classes_with_vllm_bases(module_name: str) -> list[tuple[type, list[type], list[type]]]:
    """Each class defined in the module: (class, its vLLM bases, its bases of this package outside compat)."""
    module = importlib.import_module(module_name)
    found = []
    for cls in vars(module).values():
        if not inspect.isclass(cls) or cls.__module__ != module_name:
            continue
        vllm_bases = [base for base in cls.__mro__ if base.__module__.startswith("vllm.")]
        ours = [
            base
            for base in cls.__mro__
            if base.__module__.startswith("asl_vllm.") and not base.__module__.startswith(COMPAT)
        ]
        found.append((cls, vllm_bases, ours))
    return found


@pytest.mark.parametrize("module_name", _modules_outside_compat())
def test_no_private_vllm_method_is_overridden_outside_compat(module_name):
    for _, vllm_bases, ours in _classes_with_vllm_bases(module_name):
        for base in ours:
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


def _compat_source_files() -> list[Path]:
    return sorted(Path(vllm_compat.__file__).parent.glob("*.py"))


def _names_vllm_state(node: ast.AST) -> str | None:
    """What `node` reads of a vLLM object's own state, or None."""
    if isinstance(node, ast.Attribute) and node.attr in VLLM_STATE:
        return f".{node.attr}"
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name == "CommonAttentionMetadata":
            return "builds CommonAttentionMetadata"
        private = [keyword.arg for keyword in node.keywords if keyword.arg and _is_private(keyword.arg)]
        if private:
            return f"passes a private field ({', '.join(private)})"
    return None


@pytest.mark.parametrize("path", _source_files_outside_compat(), ids=lambda path: path.name)
def test_no_vllm_state_is_read_outside_compat(path):
    tree = ast.parse(path.read_text())
    found = [(node.lineno, what) for node in ast.walk(tree) if (what := _names_vllm_state(node))]
    assert not [f"{path.name}:{line}: {what}" for line, what in sorted(found)]


@functools.cache
def _assigned_on_self(cls: type) -> frozenset[str]:
    """The attributes the methods of a vLLM class assign on `self` (its own state; dataclass fields excluded)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return frozenset()
    names = set()
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            else:
                continue
            for target in targets:
                for leaf in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                    if isinstance(leaf, ast.Attribute) and getattr(leaf.value, "id", None) == "self":
                        names.add(leaf.attr)
    return frozenset(names)


def _self_attributes(cls: type) -> list[tuple[int, str]]:
    """(line, name) of every `self.<name>` in the class's own source."""
    source, first_line = inspect.getsourcelines(cls)
    tree = ast.parse(textwrap.dedent("".join(source)))
    return [
        (first_line + node.lineno - 1, node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
    ]


@pytest.mark.parametrize("module_name", _modules_outside_compat())
def test_no_vllm_state_is_read_on_self_outside_compat(module_name):
    for cls, vllm_bases, ours in _classes_with_vllm_bases(module_name):
        vllm_state = set().union(*map(_assigned_on_self, vllm_bases)) - BUILT_WITH
        for base in ours:
            found = [
                f"{base.__qualname__}:{line}: self.{name}"
                for line, name in sorted(_self_attributes(base))
                if name in vllm_state
            ]
            assert not found, f"{cls.__qualname__} reads vLLM state: {found}"


@pytest.mark.parametrize("path", _compat_source_files(), ids=lambda path: path.name)
def test_compat_imports_nothing_from_the_engine(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            modules = [node.module or "", *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        engine = [name for name in modules if name == "asl_vllm.engine" or name.startswith("asl_vllm.engine.")]
        assert not engine, f"{path.name}:{node.lineno} imports {engine}"
