"""Typed errors of the core."""


class CoreError(Exception):
    """Base class of the core's errors."""


class InvalidInputError(CoreError, ValueError):
    """An input array or value is malformed (wrong shape, NaN, inf, empty)."""


class DegenerateInputError(CoreError):
    """Too few or collinear points: the pose is not observable."""


class NoImageryError(CoreError):
    """No aerial imagery covers the requested point."""


class NoValidHypothesisError(DegenerateInputError):
    """RANSAC found no hypothesis satisfying the minimal-sample geometry and the priors.

    Attributes:
        rejected_by_priors: hypotheses that were well-posed but violated a prior (scale, yaw or
            position); 0 means every minimal sample was degenerate.
    """

    def __init__(self, message: str, rejected_by_priors: int = 0) -> None:
        super().__init__(message)
        self.rejected_by_priors = rejected_by_priors


class UnavailableAtStampError(CoreError, LookupError):
    """A stamp-sorted buffer cannot give a value at the requested stamp.

    Args:
        reason: short stable key that counters and diagnostics use (``no_fix``, ``gap``, ...).
        message: what was missing, for logs.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PriorUnavailableError(UnavailableAtStampError):
    """No GNSS prior at a stamp: ``reason`` ``no_fix`` (no fix yet) or ``stale_fix``."""


class AttitudeUnavailableError(UnavailableAtStampError):
    """No IMU attitude at a stamp: ``reason`` ``no_imu``, ``not_bracketed`` or ``gap``."""
