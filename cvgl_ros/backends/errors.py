"""Typed errors of the inference backends, and the import helper naming a missing extra.

The models subpackage builds on the backends (never the reverse), so the errors both share live
here: :class:`ModelError` is the base of every model and backend error (``except ModelError``
catches a backend failure too), and :mod:`cvgl_ros.models.errors` re-exports it with
:class:`MissingExtraError` and :func:`require`.
"""

from __future__ import annotations

import importlib
from typing import Any


class ModelError(Exception):
    """Base class of the errors of the models and of their inference backends."""


class BackendError(ModelError):
    """A backend cannot be opened or run (bad file, wrong inputs, unavailable device)."""


class EngineMismatchError(BackendError):
    """A TensorRT engine was built for another GPU, TensorRT version or ONNX file."""


class MissingExtraError(ModelError, ImportError):
    """An optional package is not installed; the message names what to install.

    Args:
        package: the missing importable module (``"safetensors.numpy"``); its top-level name
            is what the message calls the package.
        extra: the setup.py extra that installs it.
        purpose: what needs it.
        pip_spec: a requirement to install on its own (``"safetensors>=0.4"``), for packages a
            robot installs with pip beside ROS (no rosdep key), where pulling an extra would
            also drag in packages JetPack provides (torch, TensorRT).
    """

    def __init__(self, package: str, extra: str, purpose: str, pip_spec: str = "") -> None:
        name = package.split(".")[0]
        how = f"pip install 'cvgl_ros[{extra}]'"
        if pip_spec:
            how = f"python3 -m pip install '{pip_spec}' (it is also in {how})"
        super().__init__(
            f"{purpose} needs the Python package '{name}', which is not installed; "
            f"install it with: {how}"
        )
        self.package = package
        self.extra = extra


def require(package: str, extra: str, purpose: str, pip_spec: str = "") -> Any:
    """Import ``package`` or raise :class:`MissingExtraError` naming ``extra``.

    Args:
        package: importable module name (``"torch"``, ``"onnxruntime"``).
        extra: the setup.py extra that installs it (``"torch"``, ``"onnx"``, ``"tensorrt"``).
        purpose: what needs it, for the message.
        pip_spec: a stand-alone pip requirement the message names first (see
            :class:`MissingExtraError`).

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise MissingExtraError(package, extra, purpose, pip_spec) from exc


__all__ = [
    "BackendError",
    "EngineMismatchError",
    "MissingExtraError",
    "ModelError",
    "require",
]
