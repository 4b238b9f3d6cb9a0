"""Matcher / depth configurations and factories."""

from __future__ import annotations

import sys
import types

import pytest

from cvgl_ros.core.interfaces import DepthProvider
from cvgl_ros.models import (
    ClassicalMatcher,
    DepthConfig,
    DepthModelConfig,
    LearnedMatcherConfig,
    MatcherConfig,
    build_depth,
    build_matcher,
    factory,
)


def _core_has(name: str) -> bool:
    try:
        factory._core_depth_class(name)
    except ImportError:
        return False
    return True


def test_build_classical_matcher_passes_sub_config() -> None:
    cfg = MatcherConfig(kind="classical")
    matcher = build_matcher(cfg)
    assert isinstance(matcher, ClassicalMatcher)
    assert matcher.config is cfg.classical


def test_build_rejects_wrong_config_type() -> None:
    with pytest.raises(TypeError, match="MatcherConfig"):
        build_matcher(DepthConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="DepthConfig"):
        build_depth(MatcherConfig())  # type: ignore[arg-type]


@pytest.mark.skipif(not _core_has("GroundPlaneDepth"), reason="core GroundPlaneDepth not present")
def test_build_ground_plane_depth_from_core() -> None:
    depth = build_depth(DepthConfig(kind="ground_plane", camera_height_m=2.5))
    assert isinstance(depth, DepthProvider)
    assert type(depth).__name__ == "GroundPlaneDepth"


@pytest.mark.skipif(
    not _core_has("ConstantRangeDepth"), reason="core ConstantRangeDepth not present"
)
def test_build_constant_range_depth_from_core() -> None:
    depth = build_depth(DepthConfig(kind="constant_range", range_m=80.0))
    assert isinstance(depth, DepthProvider)
    assert type(depth).__name__ == "ConstantRangeDepth"


def test_build_depth_passes_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("cvgl_ros.core.depth")

    class GroundPlaneDepth:
        def __init__(self, camera_height_m: float) -> None:
            self.camera_height_m = camera_height_m

    class ConstantRangeDepth:
        def __init__(self, range_m: float) -> None:
            self.range_m = range_m

    fake.GroundPlaneDepth = GroundPlaneDepth  # type: ignore[attr-defined]
    fake.ConstantRangeDepth = ConstantRangeDepth  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cvgl_ros.core.depth", fake)
    gp = build_depth(DepthConfig(kind="ground_plane", camera_height_m=2.5))
    assert gp.camera_height_m == 2.5  # type: ignore[attr-defined]
    cr = build_depth(DepthConfig(kind="constant_range", range_m=80.0))
    assert cr.range_m == 80.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("factory_call", "field"),
    [
        (lambda: MatcherConfig(kind="neural"), "kind"),  # type: ignore[arg-type]
        (lambda: MatcherConfig(kind="learned"), "checkpoint_path"),
        (lambda: LearnedMatcherConfig(backend="tflite"), "backend"),  # type: ignore[arg-type]
        (lambda: LearnedMatcherConfig(device="tpu"), "device"),  # type: ignore[arg-type]
        (lambda: LearnedMatcherConfig(backend="tensorrt"), "tensorrt"),
        (lambda: LearnedMatcherConfig(fp16=True), "fp16"),
        (lambda: LearnedMatcherConfig(top_k=0), "top_k"),
        (lambda: LearnedMatcherConfig(min_probability=1.0), "min_probability"),
        (lambda: LearnedMatcherConfig(ground_size_px=(10, 224)), "ground_size_px"),
        (lambda: LearnedMatcherConfig(num_threads=0), "num_threads"),
        (lambda: DepthConfig(kind="lidar"), "kind"),  # type: ignore[arg-type]
        (lambda: DepthConfig(camera_height_m=0.0), "camera_height_m"),
        (lambda: DepthConfig(range_m=float("nan")), "range_m"),
        (lambda: DepthModelConfig(variant="giant"), "variant"),  # type: ignore[arg-type]
        (lambda: DepthModelConfig(max_depth_m=-1.0), "max_depth_m"),
        (lambda: DepthModelConfig(input_size_px=(0, 14)), "input_size_px"),
        (lambda: DepthModelConfig(backend="onnxruntime"), "engine_path"),
    ],
)
def test_config_validation_names_field(factory_call: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        factory_call()  # type: ignore[operator]
