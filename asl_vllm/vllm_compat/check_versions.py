"""Check vLLM releases against `touch_points` and the plugin's vLLM imports, by reading their sources.

    python -m asl_vllm.vllm_compat.check_versions            # every release in versions.py
    python -m asl_vllm.vllm_compat.check_versions 0.34.0     # any other release
    python -m asl_vllm.vllm_compat.check_versions --source DIR   # an unpacked tree (DIR/vllm/...)

A release's `vllm` wheel is fetched with pip, without dependencies, into
`${XDG_CACHE_HOME:-~/.cache}/asl-vllm/vllm-wheels/` (about 240-340 MB each;
later runs read the cache), and its .py files are parsed with `ast`, never
imported: a CUDA build's sources are read on any machine. One line per release;
the exit status is 1 when one mismatches, 2 when a wheel cannot be fetched.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from asl_vllm.vllm_compat import touch_points, versions
from asl_vllm.vllm_compat.touch_points import TouchPoint

# The wheels are pure-Python apart from abi3 extensions: one platform and a Python every checked release accepts.
WHEEL_PLATFORM = "manylinux_2_28_x86_64"
WHEEL_PYTHON = "3.12"
PLUGIN_ROOT = Path(__file__).resolve().parents[1]
Scope = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


class FetchError(RuntimeError):
    """pip could not fetch a wheel (registry unreachable, no such release)."""


def wheel_cache() -> Path:
    """Where fetched wheels stay, outside any checkout."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "asl-vllm" / "vllm-wheels"


def fetch_wheel(version: str) -> Path:
    """The cached `vllm` wheel of `version`, downloaded first if missing."""
    cache = wheel_cache()
    cached = sorted(cache.glob(f"vllm-{version}-*.whl"))
    if cached:
        return cached[0]
    cache.mkdir(parents=True, exist_ok=True)
    # Download beside the cache and move in whole, so an interrupted download leaves no wheel behind.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as scratch:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
            "--python-version", WHEEL_PYTHON, "--platform", WHEEL_PLATFORM, "--disable-pip-version-check",
            "--quiet", "-d", scratch, f"vllm=={version}",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(scratch).glob("vllm-*.whl"))
        if result.returncode or not wheels:
            said = " ".join((result.stderr or result.stdout).split())
            raise FetchError(f"pip could not fetch vllm=={version}: {said}")
        return Path(shutil.move(wheels[0], cache / wheels[0].name))


class Sources:
    """A vLLM tree's module sources, from a wheel or a directory holding `vllm/`, parsed on demand."""

    def __init__(self, root: Path) -> None:
        self._zip = zipfile.ZipFile(root) if root.is_file() else None
        self._root = root
        self._trees: dict[str, ast.Module | None] = {}

    def _read(self, relative: str) -> str | None:
        if self._zip is not None:
            try:
                return self._zip.read(relative).decode()
            except KeyError:
                return None
        path = self._root / relative
        return path.read_text() if path.is_file() else None

    def module(self, name: str) -> ast.Module | None:
        """`name`'s parsed source (a module file or a package's `__init__.py`); None when it does not exist."""
        if name not in self._trees:
            base = name.replace(".", "/")
            text = self._read(f"{base}.py")
            if text is None:
                text = self._read(f"{base}/__init__.py")
            self._trees[name] = None if text is None else ast.parse(text)
        return self._trees[name]

    def version(self) -> str:
        """The release this tree is (`vllm/_version.py`, which setuptools-scm writes into every build)."""
        for node in ast.walk(self.module("vllm._version") or ast.Module(body=[], type_ignores=[])):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
                return ast.literal_eval(node.value)
        raise ValueError("no vllm/_version.py with __version__")


def _members(scope: Scope) -> Iterator[tuple[str, ast.AST]]:
    """The names a module or class body defines, with their definitions."""
    for node in scope.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        yield leaf.id, node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.target.id, node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                yield (alias.asname or alias.name).split(".")[0], node
        elif isinstance(node, (ast.If, ast.Try)):
            yield from _members(node)


def _lookup(scope: Scope, name: str, tree: ast.Module) -> ast.AST | None:
    """`name` in `scope`; in a class, also in its base classes defined in the same module."""
    found = dict(_members(scope))
    if name in found:
        return found[name]
    if isinstance(scope, ast.ClassDef):
        module_names = dict(_members(tree))
        for base in scope.bases:
            base_class = module_names.get(base.id) if isinstance(base, ast.Name) else None
            if isinstance(base_class, ast.ClassDef):
                inherited = _lookup(base_class, name, tree)
                if inherited is not None:
                    return inherited
    return None


def _resolve(tree: ast.Module, dotted: str) -> ast.AST | None:
    node: ast.AST | None = tree
    for part in dotted.split("."):
        if not isinstance(node, (ast.Module, ast.ClassDef)):
            return None
        node = _lookup(node, part, tree)
    return node


def _assigns(scope: ast.AST, attribute: str) -> bool:
    """Whether `scope` assigns `attribute`: in a class body or module by name, in a function on its first
    parameter (`self.<attribute>`, or `layer.<attribute>` in a function setting up a layer), also as one
    element of a tuple assignment."""
    if isinstance(scope, (ast.Module, ast.ClassDef)):
        return any(name == attribute for name, _ in _members(scope))
    parameters = [arg.arg for arg in (*scope.args.posonlyargs, *scope.args.args)]
    owner = parameters[0] if parameters else "self"
    for node in ast.walk(scope):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        # `self.a, self.b = ...` assigns each element.
        targets = [leaf for t in targets for leaf in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])]
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and any(
            isinstance(t, ast.Attribute) and t.attr == attribute and getattr(t.value, "id", None) == owner
            for t in targets
        ):
            return True
    return False


def _signature_problem(function: ast.AST, point: TouchPoint) -> str | None:
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return "is not a function"
    arguments = function.args
    ordered = [arg.arg for arg in (*arguments.posonlyargs, *arguments.args)]
    static = any(getattr(d, "id", None) == "staticmethod" for d in function.decorator_list)
    if "." in point.name and not static:
        ordered = ordered[1:]
    if tuple(ordered[: len(point.positional)]) != point.positional:
        return f"parameters ({', '.join(ordered)}), expected ({', '.join(point.positional)}, ...)"
    by_name = {*ordered, *(arg.arg for arg in arguments.kwonlyargs)}
    missing = [name for name in point.keywords if name not in by_name]
    return f"lacks parameters {', '.join(missing)}" if missing else None


def _env_names(tree: ast.Module) -> set[str]:
    return {
        key.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    }


def problem(sources: Sources, point: TouchPoint) -> str | None:
    """What is wrong with `point` in `sources`; None when it holds."""
    tree = sources.module(point.module)
    if tree is None:
        return "module missing"
    if point.kind == "env":
        return None if point.name in _env_names(tree) else "not read by vLLM"
    if point.kind == "attribute":
        scope = _resolve(tree, point.assigned_in) if point.assigned_in else tree
        if scope is None:
            return f"{point.assigned_in or point.module} missing"
        attribute = point.name.rsplit(".", 1)[-1]
        return None if _assigns(scope, attribute) else f"not assigned in {point.assigned_in or 'the module'}"
    node = _resolve(tree, point.name)
    if node is None:
        return "missing"
    return _signature_problem(node, point) if point.kind == "function" else None


def plugin_imports() -> list[tuple[str, str, str]]:
    """Every `from vllm... import name` in the plugin's sources: (module, name, importing file)."""
    found = []
    for path in sorted(PLUGIN_ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vllm" and not node.level:
                found += [(node.module, alias.name, path.name) for alias in node.names]
    return found


def _import_problem(sources: Sources, module: str, name: str) -> str | None:
    if sources.module(f"{module}.{name}") is not None:
        return None
    tree = sources.module(module)
    if tree is None:
        return "module missing"
    if _lookup(tree, name, tree) is not None:
        return None
    # A module answering names through `__getattr__` (vllm/__init__.py) lists them as strings.
    lazy = "__getattr__" in dict(_members(tree)) and any(
        isinstance(node, ast.Constant) and node.value == name for node in ast.walk(tree)
    )
    return None if lazy else "missing"


def applies(point: TouchPoint, version: str) -> bool:
    """Whether the plugin relies on `point` on `version`."""
    release = versions.release(version)
    if point.since and release < versions.release(point.since):
        return False
    if point.before and release >= versions.release(point.before):
        return False
    return not point.cpu_only or release == versions.release(versions.CPU_VERSION)


def check(sources: Sources, version: str) -> list[str]:
    """Every mismatch of `version`'s sources, one message each."""
    problems = []
    for point in touch_points.TOUCH_POINTS:
        if applies(point, version) and (message := problem(sources, point)):
            problems.append(f"{point} ({point.user}): {message}")
    for module, name, importer in plugin_imports():
        if message := _import_problem(sources, module, name):
            problems.append(f"{module}:{name} (import in {importer}): {message}")
    return sorted(set(problems))


def report(label: str, version: str, problems: list[str]) -> str:
    """The one line printed for a release."""
    if not problems:
        return f"{label} {version}: ok"
    return f"{label} {version}: {len(problems)} missing or changed: " + "; ".join(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", help=f"vLLM releases (default: {', '.join(versions.CUDA_VERSIONS)})")
    parser.add_argument("--source", type=Path, action="append", default=[], help="a directory holding vllm/")
    args = parser.parse_args(argv)
    targets = args.versions or ([] if args.source else list(versions.CUDA_VERSIONS))
    status = 0
    for root in args.source:
        sources = Sources(root)
        problems = check(sources, sources.version())
        print(report(f"source {root}", sources.version(), problems), flush=True)
        status = status or (1 if problems else 0)
    for version in targets:
        try:
            wheel = fetch_wheel(version)
        except FetchError as error:
            print(f"vllm {version}: not checked: {error}", flush=True)
            status = 2
            continue
        problems = check(Sources(wheel), version)
        print(report("vllm", version, problems), flush=True)
        status = status or (1 if problems else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
