"""The package's import structure: no import cycles, subpackage layering, tools on public APIs.

Read statically (``ast``, nothing is imported), so a violation fails here even when no test
happens to import the offending module.

What counts as an import:

- **Cycles** are import-time cycles between modules: imports that run when a module is
  imported -- at module level, including inside ``try`` / ``if`` blocks there, but not under
  ``if TYPE_CHECKING:`` and not inside a function or method. A function-local import runs only
  when the function is called, after both modules finished importing, so it can never meet a
  half-initialised module; the package uses it on purpose to defer heavy optional code (the
  numba RANSAC kernel, a backend runner chosen by ``open_backend``, matplotlib in reports).
- **Layering** counts every import of another subpackage, function-local ones included (a
  lazy import is still a dependency); only ``if TYPE_CHECKING:`` imports, which never run, are
  left out.
- ``import a.b.c`` and ``from a.b import c`` (``c`` a module) depend on ``a.b.c``;
  ``from a.b import name`` (``name`` not a module) depends on ``a.b`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "cvgl_ros"

# Subpackage -> the subpackages it may import (besides itself). The layers, bottom up:
# core < backends, tiles, sim < models < ros, training < tools. In particular the core imports
# nothing else of the package; backends and tiles do not import models, ros or tools; models
# do not import ros or tools; ros does not import tools. Every subpackage may use
# cvgl_ros/lazy.py (the PEP 562 helper of the __init__ files), which imports nothing.
_BASE = frozenset({"lazy"})
ALLOWED_IMPORTS: dict[str, frozenset[str]] = {
    "": frozenset(),  # cvgl_ros/__init__.py
    "lazy": frozenset(),
    "core": _BASE,
    "backends": _BASE | {"core"},
    "tiles": _BASE | {"core"},
    "sim": _BASE | {"core"},
    "models": _BASE | {"core", "backends"},
    "ros": _BASE | {"core", "backends", "models", "tiles"},
    "training": _BASE | {"core", "backends", "models", "sim", "tiles"},
    "tools": _BASE | {"core", "backends", "tiles", "sim", "models", "ros", "training", "tools"},
}
# Private names that are public API by convention (namedtuple methods).
PUBLIC_UNDERSCORE_NAMES = frozenset({"_replace", "_asdict", "_fields", "_make"})


@dataclass(frozen=True)
class Import:
    """One import of a package module found in a source file.

    Attributes:
        source: the importing module (dotted).
        target: the imported module (dotted; a package for a name from its ``__init__``).
        names: the imported names (``from target import names``), empty for ``import``.
        line: line number.
        local: inside a function or method (runs when called, not at import time).
    """

    source: str
    target: str
    names: tuple[str, ...]
    line: int
    local: bool


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root / package``."""
    out: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(
    nodes: list[ast.stmt], local: bool
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Import statements with whether they are function-local; ``TYPE_CHECKING`` skipped."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, local
        elif isinstance(node, ast.If) and _is_type_checking(node):
            yield from _walk(node.orelse, local)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _walk(node.body, True)
        else:
            for field_name in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field_name, None)
                if isinstance(children, list):
                    stmts = [c for c in children if isinstance(c, ast.stmt)]
                    for c in children:  # except handlers and match cases hold statements
                        if isinstance(c, ast.ExceptHandler | ast.match_case):
                            stmts.extend(c.body)
                    yield from _walk(stmts, local)


def package_imports(root: Path, package: str) -> list[Import]:
    """Every import of a ``package`` module in ``package``'s own source files."""
    modules = module_files(root, package)
    found: list[Import] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        base = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, local in _walk(tree.body, False):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package:
                        found.append(Import(name, alias.name, (), node.lineno, local))
                continue
            target = node.module or ""
            if node.level:  # relative: from .x import y
                parts = base.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                target = ".".join([*parts, target] if target else parts)
            if target.split(".")[0] != package:
                continue
            names = tuple(alias.name for alias in node.names)
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            for sub in submodules:
                found.append(Import(name, sub, (), node.lineno, local))
            rest = tuple(n for n in names if f"{target}.{n}" not in modules)
            if rest or not submodules:
                found.append(Import(name, target, rest, node.lineno, local))
    return found


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """The import-time cycles: strongly connected components (> 1 module, or a self-import)
    of the module-level import graph (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.local:
            graph.setdefault(imp.source, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layering_violations(imports: list[Import], allowed: dict[str, frozenset[str]]) -> list[str]:
    """``source -> target`` imports that cross into a subpackage ``allowed`` does not list."""
    bad = []
    for imp in imports:
        src, dst = _subpackage(imp.source), _subpackage(imp.target)
        if src == dst:
            continue
        if src not in allowed:
            bad.append(f"{imp.source}: subpackage {src!r} has no entry in ALLOWED_IMPORTS")
        elif dst not in allowed[src]:
            how = "function-local " if imp.local else ""
            bad.append(
                f"{imp.source}:{imp.line}: {how}import of {imp.target} ({src} may import only "
                f"{sorted(allowed[src]) or 'nothing else of the package'})"
            )
    return bad


def _is_private(name: str) -> bool:
    return (
        name.startswith("_")
        and not (name.startswith("__") and name.endswith("__"))
        and name not in PUBLIC_UNDERSCORE_NAMES
    )


def private_name_uses(root: Path, package: str, subpackage: str) -> list[str]:
    """Uses of other modules' private names in ``package.subpackage``'s modules.

    Flagged: ``from package.x import _name`` from another module; attribute access
    ``obj._name`` on anything but ``self`` / ``cls`` or a module imported from outside the
    package (``argparse._SubParsersAction`` is that library's business); and
    ``getattr/hasattr/setattr(obj, "_name")`` on anything but ``self`` / ``cls``.
    """
    bad = []
    imports = package_imports(root, package)
    for module, path in module_files(root, package).items():
        if _subpackage(module) != subpackage:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        external: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] != package:
                        external.add(alias.asname or alias.name.split(".")[0])
        owners = {"self", "cls", *external}
        for imp in imports:
            if imp.source == module and imp.target != module:
                for name in imp.names:
                    if _is_private(name):
                        bad.append(f"{module}:{imp.line}: imports {imp.target}.{name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                if not (isinstance(node.value, ast.Name) and node.value.id in owners):
                    bad.append(f"{module}:{node.lineno}: uses .{node.attr}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and _is_private(node.args[1].value)
                and not (isinstance(node.args[0], ast.Name) and node.args[0].id in owners)
            ):
                bad.append(f"{module}:{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return sorted(bad)


# --------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return package_imports(REPO_ROOT, PACKAGE)


def test_no_import_cycles(imports: list[Import]) -> None:
    cycles = import_cycles(imports)
    assert not cycles, "import-time cycles between modules:\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_no_cycles_between_subpackages(imports: list[Import]) -> None:
    """Subpackage level: every import counts, function-local ones included."""

    def sub(module: str) -> str:
        return f"{PACKAGE}.{_subpackage(module)}"

    as_modules = [
        Import(sub(i.source), sub(i.target), (), i.line, False)
        for i in imports
        if sub(i.source) != sub(i.target)
    ]
    cycles = import_cycles(as_modules)
    assert not cycles, "subpackages importing each other:\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_the_layers_are_acyclic() -> None:
    edges = [
        Import(f"{PACKAGE}.{src}", f"{PACKAGE}.{dst}", (), 0, False)
        for src, dsts in ALLOWED_IMPORTS.items()
        for dst in dsts
        if dst != src
    ]
    assert import_cycles(edges) == []


def test_subpackages_respect_the_layering(imports: list[Import]) -> None:
    subpackages = {_subpackage(m) for m in module_files(REPO_ROOT, PACKAGE)}
    assert subpackages == set(ALLOWED_IMPORTS), "a new subpackage needs its layer"
    bad = layering_violations(imports, ALLOWED_IMPORTS)
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_tools_use_public_apis_only() -> None:
    bad = private_name_uses(REPO_ROOT, PACKAGE, "tools")
    assert not bad, "tools reach into private names of other modules:\n" + "\n".join(bad)


# --------------------------------------------------------------------------- the checks


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """A synthetic package with one of each problem: the checks must report exactly those."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/core/__init__.py": "",
            "pkg/core/a.py": "from pkg.core import b\n",
            "pkg/core/b.py": "from . import a\n",  # cycle a <-> b
            "pkg/core/c.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg.tools import t\n"  # ignored
                "def f():\n    from pkg.core import d\n"  # local: not a cycle edge
            ),
            "pkg/core/d.py": "import pkg.core.c\n",
            "pkg/models/__init__.py": "",
            "pkg/models/m.py": "def f():\n    from pkg.tools.t import g\n",  # layering
            "pkg/tools/__init__.py": "",
            "pkg/tools/t.py": (
                "import argparse\n"
                "from pkg.models.m import _hidden, f\n"
                "def g(x: argparse._SubParsersAction, node):\n"
                "    node._pipeline.run()\n"
                "    return getattr(node, '_state', None), x._replace()\n"
            ),
        },
    )
    imports = package_imports(tmp_path, "pkg")
    assert import_cycles(imports) == [["pkg.core.a", "pkg.core.b"]]
    allowed = {"": frozenset(), "core": frozenset(), "models": frozenset({"core"})}
    allowed["tools"] = frozenset({"core", "models"})
    bad = layering_violations(imports, allowed)
    assert len(bad) == 1 and "pkg.models.m:2: function-local import of pkg.tools.t" in bad[0]
    private = private_name_uses(tmp_path, "pkg", "tools")
    assert private == [
        "pkg.tools.t:2: imports pkg.models.m._hidden",
        "pkg.tools.t:4: uses ._pipeline",
        "pkg.tools.t:5: getattr(..., '_state')",
    ], private
