"""Typed errors of the models subpackage."""

from __future__ import annotations

from typing import Any


class ModelError(Exception):
    """Base class of the models' errors."""


class MissingExtraError(ModelError, ImportError):
    """An optional package is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed; "
            f"install it with: pip install 'cvgl_ros[{extra}]'"
        )
        self.package = package
        self.extra = extra


class WeightsError(ModelError, ValueError):
    """A weights file or checkpoint is missing, malformed or does not fit the architecture."""


class CheckpointError(WeightsError):
    """A matcher checkpoint is missing, malformed or of an unsupported version."""


def require(package: str, extra: str, purpose: str) -> Any:
    """Import ``package`` or raise :class:`MissingExtraError` naming ``extra``.

    Args:
        package: importable module name (``"torch"``, ``"onnxruntime"``).
        extra: the setup.py extra that installs it (``"torch"``, ``"onnx"``, ``"tensorrt"``).
        purpose: what needs it, for the message.

    Returns:
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise MissingExtraError(package, extra, purpose) from exc
