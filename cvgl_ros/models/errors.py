"""Typed errors of the models subpackage.

:class:`ModelError` (the base of every model and backend error), :class:`MissingExtraError` and
:func:`require` live in :mod:`cvgl_ros.backends.errors`, the lower layer, and are re-exported
here.
"""

from __future__ import annotations

from cvgl_ros.backends.errors import MissingExtraError, ModelError, require


class WeightsError(ModelError, ValueError):
    """A weights file or checkpoint is missing, malformed or does not fit the architecture."""


class CheckpointError(WeightsError):
    """A matcher checkpoint is missing, malformed or of an unsupported version."""


__all__ = ["CheckpointError", "MissingExtraError", "ModelError", "WeightsError", "require"]
