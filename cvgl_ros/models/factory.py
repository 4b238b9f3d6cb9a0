"""Build matchers and depth providers from their configurations.

Heavy modules (torch, transformers, the core's depth providers) are imported only when the
configuration asks for them, so ``import cvgl_ros.models`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cvgl_ros.models.classical import ClassicalMatcher
from cvgl_ros.models.config import DepthConfig, MatcherConfig

if TYPE_CHECKING:
    from cvgl_ros.core.interfaces import DepthProvider, Matcher


# Core modules that may define the geometric depth providers, searched in this order.
_CORE_DEPTH_MODULES: tuple[str, ...] = (
    "cvgl_ros.core.depth",
    "cvgl_ros.core.lifting",
    "cvgl_ros.core",
)


def _core_depth_class(name: str) -> Any:
    """The core's geometric depth provider class ``name`` (imported on first use)."""
    for module_name in _CORE_DEPTH_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    raise ImportError(
        f"cvgl_ros.core does not provide {name} (looked in {', '.join(_CORE_DEPTH_MODULES)})"
    )


def build_matcher(cfg: MatcherConfig) -> Matcher:
    """Build the matcher ``cfg`` describes.

    Args:
        cfg: matcher configuration.

    Returns:
        An object implementing :class:`cvgl_ros.core.interfaces.Matcher`.

    Raises:
        cvgl_ros.models.errors.MissingExtraError: the learned matcher without torch /
            transformers (or the chosen backend's package) installed.
        cvgl_ros.models.errors.WeightsError: learned weights missing or malformed.
    """
    if not isinstance(cfg, MatcherConfig):
        raise TypeError(f"expected MatcherConfig, got {type(cfg).__name__}")
    if cfg.kind == "classical":
        return ClassicalMatcher(cfg.classical)
    from cvgl_ros.models.learned import LearnedMatcher

    return LearnedMatcher.from_config(cfg.learned)


def build_depth(cfg: DepthConfig) -> DepthProvider:
    """Build the depth provider ``cfg`` describes.

    Args:
        cfg: depth configuration.

    Returns:
        An object implementing :class:`cvgl_ros.core.interfaces.DepthProvider`.

    Raises:
        cvgl_ros.models.errors.MissingExtraError: ``kind == "model"`` without torch /
            transformers (or the chosen backend's package).
    """
    if not isinstance(cfg, DepthConfig):
        raise TypeError(f"expected DepthConfig, got {type(cfg).__name__}")
    if cfg.kind == "ground_plane":
        provider: DepthProvider = _core_depth_class("GroundPlaneDepth")(
            camera_height_m=cfg.camera_height_m
        )
        return provider
    if cfg.kind == "constant_range":
        provider = _core_depth_class("ConstantRangeDepth")(range_m=cfg.range_m)
        return provider
    from cvgl_ros.models.depth import DepthAnythingDepth

    return DepthAnythingDepth.from_config(cfg.model)
