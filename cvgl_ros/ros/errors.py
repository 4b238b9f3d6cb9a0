"""Typed errors of the ROS adapter.

Each carries a short, stable ``reason`` key that the pipeline counts and the diagnostics report
(``unsupported_encoding``, ``stale_fix``, ...), next to a human-readable message.
"""

from __future__ import annotations


class RosAdapterError(Exception):
    """Base class of the ROS adapter's errors."""


class MessageConversionError(RosAdapterError, ValueError):
    """A message could not be converted; ``reason`` is a short key for counters.

    Args:
        reason: short stable key, e.g. ``"unsupported_encoding"``, ``"truncated"``.
        message: what was wrong, for logs and diagnostics.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ImageConversionError(MessageConversionError):
    """An image message could not be decoded into pixels."""


class FixRejectedError(MessageConversionError):
    """A GNSS fix is unusable (no fix, NaN, out of range)."""


class CameraInfoError(MessageConversionError):
    """A CameraInfo message does not describe a usable calibrated camera."""


class ParameterError(RosAdapterError, ValueError):
    """A parameter is unknown, of the wrong type, or out of range.

    Args:
        name: the parameter's full (dotted) name.
        message: what was expected.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"parameter '{name}': {message}")
        self.name = name


class ParameterFileError(ParameterError):
    """A parameter file is unreadable, not YAML, or not shaped like a ROS parameter file.

    Args:
        path: the file.
        message: what is wrong with it.
    """

    def __init__(self, path: str, message: str) -> None:
        super(ParameterError, self).__init__(f"parameter file '{path}': {message}")
        self.name = path
