"""Typed errors of the core."""


class CoreError(Exception):
    """Base class of the core's errors."""


class InvalidInputError(CoreError, ValueError):
    """An input array or value is malformed (wrong shape, NaN, inf, empty)."""


class DegenerateInputError(CoreError):
    """Too few or collinear points: the pose is not observable."""


class NoImageryError(CoreError):
    """No aerial imagery covers the requested point."""
