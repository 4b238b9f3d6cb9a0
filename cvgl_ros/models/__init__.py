"""The learned and classical matching and depth models.

Lives here: the frozen DINOv2 backbone (transformers ``Dinov2Model``, local weights only), the
projection head and dual-softmax matcher with a dustbin, the aerial feature cache, Depth
Anything V2 depth models and the geometric depth providers' adapters, the classical OpenCV
matcher (SIFT/AKAZE/ORB) used for nadir cameras when no learned weights are installed, the
matcher checkpoint format, and ONNX export. torch is imported only inside this subpackage.

The names below are imported on first use (:mod:`cvgl_ros.lazy`): importing
``cvgl_ros.models.config`` does not import a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvgl_ros.lazy import lazy_exports

if TYPE_CHECKING:
    from cvgl_ros.models.classical import ClassicalMatcher
    from cvgl_ros.models.config import (
        ClassicalMatcherConfig,
        DepthConfig,
        DepthModelConfig,
        LearnedMatcherConfig,
        MatcherConfig,
    )
    from cvgl_ros.models.factory import build_depth, build_matcher

__all__ = [
    "ClassicalMatcher",
    "ClassicalMatcherConfig",
    "DepthConfig",
    "DepthModelConfig",
    "LearnedMatcherConfig",
    "MatcherConfig",
    "build_depth",
    "build_matcher",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cvgl_ros.models.classical": ("ClassicalMatcher",),
        "cvgl_ros.models.config": (
            "ClassicalMatcherConfig",
            "DepthConfig",
            "DepthModelConfig",
            "LearnedMatcherConfig",
            "MatcherConfig",
        ),
        "cvgl_ros.models.factory": ("build_depth", "build_matcher"),
    },
)
