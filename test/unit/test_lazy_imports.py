"""Importing the parameter table or the core stays light; subpackages export their names lazily.

The parameter table (``cvgl_ros.ros.params``) is read by tools, launch checks and the static
config tests; the core runs on robots without the learned stack. Neither may pay for rasterio,
OpenCV, torch, ONNX Runtime or transformers just by being imported.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

import cvgl_ros
from cvgl_ros.lazy import lazy_exports

HEAVY = ("rasterio", "torch", "onnxruntime", "transformers", "tensorrt", "rclpy", "matplotlib")
PACKAGE_DIR = Path(cvgl_ros.__file__).resolve().parent
LAZY_PACKAGES = ("cvgl_ros.models", "cvgl_ros.tiles")


def _loaded_after(code: str) -> dict[str, bool]:
    """Which of HEAVY (and cv2, numba) a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport json, sys\n" + (
        f"print(json.dumps({{m: m in sys.modules for m in {[*HEAVY, 'cv2', 'numba']!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    loaded: dict[str, bool] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_the_parameter_table_imports_no_heavy_module() -> None:
    loaded = _loaded_after("import cvgl_ros.ros.params")
    assert not any(loaded[m] for m in (*HEAVY, "cv2")), loaded


def test_the_core_imports_no_heavy_module() -> None:
    core = sorted(
        f"cvgl_ros.core.{p.stem}"
        for p in (PACKAGE_DIR / "core").glob("*.py")
        if p.stem not in ("__init__", "ransac_kernel")  # the kernel is numba itself
    )
    loaded = _loaded_after("\n".join(f"import {m}" for m in core))
    assert not any(loaded[m] for m in (*HEAVY, "cv2", "numba")), loaded


def test_a_subpackage_import_loads_none_of_its_exports() -> None:
    code = (
        "import cvgl_ros.tiles, cvgl_ros.models, sys\n"
        "assert 'cvgl_ros.tiles.geotiff' not in sys.modules"
    )
    loaded = _loaded_after(code)
    assert not loaded["rasterio"] and not loaded["cv2"], loaded


def _declared_exports(package: str) -> dict[str, str]:
    """name -> module of what a package's ``__init__`` imports from its own modules: eagerly
    at module level, or (the lazy names) under ``if TYPE_CHECKING:``."""
    path = PACKAGE_DIR.joinpath(*package.split(".")[1:], "__init__.py")
    out: dict[str, str] = {}
    for node in ast.parse(path.read_text()).body:
        imports = [node]
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            imports = list(node.body)
        for imp in imports:
            if isinstance(imp, ast.ImportFrom) and (imp.module or "").startswith(package + "."):
                out.update({alias.name: imp.module or "" for alias in imp.names})
    return out


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_exports_are_the_declared_objects(package: str) -> None:
    """``__all__``, the imports (eager or for type checkers) and the lazy table name the same
    objects."""
    declared = _declared_exports(package)
    mod = importlib.import_module(package)
    assert declared and sorted(declared) == sorted(mod.__all__)
    assert set(declared) <= set(dir(mod))
    for name, module in declared.items():
        assert getattr(mod, name) is getattr(importlib.import_module(module), name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mod.nope  # noqa: B018


def test_lazy_exports_import_on_first_use_and_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = types.ModuleType("fake_pkg")
    monkeypatch.setitem(sys.modules, "fake_pkg", pkg)
    imported: list[str] = []
    real_import = importlib.import_module

    def counting_import(name: str, package: str | None = None) -> types.ModuleType:
        imported.append(name)
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", counting_import)
    getattr_, dir_ = lazy_exports("fake_pkg", {"json": ("dumps", "loads")})
    pkg.__getattr__ = getattr_  # type: ignore[attr-defined]
    assert imported == []
    assert pkg.dumps is json.dumps  # type: ignore[attr-defined]
    assert pkg.dumps is json.dumps  # type: ignore[attr-defined]
    assert imported == ["json"], "imported once, then cached on the package"
    assert {"dumps", "loads"} <= set(dir_())
    with pytest.raises(AttributeError):
        getattr_("dump")
