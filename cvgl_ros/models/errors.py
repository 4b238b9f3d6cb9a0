"""Typed errors of the models subpackage."""

from __future__ import annotations

from typing import Any


class ModelError(Exception):
    """Base class of the models' errors."""


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


class WeightsError(ModelError, ValueError):
    """A weights file or checkpoint is missing, malformed or does not fit the architecture."""


class CheckpointError(WeightsError):
    """A matcher checkpoint is missing, malformed or of an unsupported version."""


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
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise MissingExtraError(package, extra, purpose, pip_spec) from exc
