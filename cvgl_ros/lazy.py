"""Lazy package attributes (PEP 562): a subpackage's ``__init__`` names what it exports and the
module each name lives in; the module is imported on first access of the name.

So ``import cvgl_ros.tiles.config`` (the parameter table does) costs the config module only,
not rasterio behind ``cvgl_ros.tiles.GeoTiffPatchSource``; ``from cvgl_ros.tiles import
build_patch_source`` still works as before. Usage in an ``__init__.py``::

    if TYPE_CHECKING:  # what type checkers and readers see
        from cvgl_ros.tiles.factory import build_patch_source

    __getattr__, __dir__ = lazy_exports(
        __name__, {"cvgl_ros.tiles.factory": ("build_patch_source",)}
    )
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package exporting names lazily.

    Args:
        package: the package's ``__name__``.
        exports: module (dotted) -> the names of it the package exports.

    Returns:
        (``__getattr__``, ``__dir__``): the first imports the name's module on first access
        and caches the value on the package (later accesses are plain attribute lookups); an
        unknown name raises ``AttributeError``, which also lets ``from package import
        submodule`` import the submodule.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook's own name)
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
