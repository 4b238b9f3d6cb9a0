"""The learned and classical matching and depth models.

Lives here: the frozen DINOv2 backbone (transformers ``Dinov2Model``, local weights only), the
projection head and dual-softmax matcher with a dustbin, the aerial feature cache, Depth
Anything V2 depth models and the geometric depth providers' adapters, the classical OpenCV
matcher (SIFT/AKAZE/ORB) used for nadir cameras when no learned weights are installed, the
matcher checkpoint format, and ONNX export. torch is imported only inside this subpackage.
"""

from cvgl_ros.models.classical import ClassicalMatcher, ClassicalMatcherConfig
from cvgl_ros.models.config import (
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
