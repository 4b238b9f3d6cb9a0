"""An exported file whose input size differs from the configured one is refused at start-up
(naming both sizes), not on every frame: ONNX Runtime files here, TensorRT engines with the
fakes in test_backends.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cvgl_ros.backends.base import open_backend
from cvgl_ros.backends.errors import BackendError

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def test_ort_backend_reports_fixed_and_dynamic_input_shapes(
    tmp_path: Path, identity_onnx: Any
) -> None:
    fixed = identity_onnx(tmp_path / "f.onnx", (1, 3, 28, 42), "depth")
    dynamic = identity_onnx(tmp_path / "d.onnx", (1, 3, "h", "w"), "depth")
    with open_backend("onnxruntime", fixed) as b:
        assert b.input_shapes == {"images": (1, 3, 28, 42)}  # type: ignore[attr-defined]
    with open_backend("onnxruntime", dynamic) as b:
        assert b.input_shapes == {"images": (1, 3, -1, -1)}  # type: ignore[attr-defined]


def test_depth_onnx_of_another_size_is_refused_at_start_up(
    tmp_path: Path, identity_onnx: Any
) -> None:
    from cvgl_ros.models.config import DepthConfig, DepthModelConfig
    from cvgl_ros.models.factory import build_depth

    path = identity_onnx(tmp_path / "depth.onnx", (1, 3, 518, 518), "depth")
    cfg = DepthConfig(
        kind="model", model=DepthModelConfig(engine_path=str(path), input_size_px=(266, 266))
    )
    with pytest.raises(BackendError) as err:
        build_depth(cfg)
    message = str(err.value)
    assert "518x518" in message and "266x266" in message and str(path) in message
    assert "--height 266 --width 266" in message and "depth.model.input_size_px" in message
    # The same file at its own size starts (and a dynamic-size file at any size).
    ok = DepthConfig(
        kind="model", model=DepthModelConfig(engine_path=str(path), input_size_px=(518, 518))
    )
    build_depth(ok).close()  # type: ignore[attr-defined]
    dynamic = identity_onnx(tmp_path / "dyn.onnx", (1, 3, "h", "w"), "depth")
    free = DepthConfig(
        kind="model", model=DepthModelConfig(engine_path=str(dynamic), input_size_px=(266, 266))
    )
    build_depth(free).close()  # type: ignore[attr-defined]


def test_matcher_onnx_of_another_size_is_refused_at_start_up(
    tmp_path: Path, identity_onnx: Any
) -> None:
    pytest.importorskip("torch")
    from cvgl_ros.models.checkpoint import (
        HeadConfig,
        MatcherCheckpointConfig,
        save_matcher_checkpoint,
    )
    from cvgl_ros.models.config import LearnedMatcherConfig
    from cvgl_ros.models.learned import LearnedMatcher
    from cvgl_ros.models.networks import random_checkpoint_tensors

    ck = MatcherCheckpointConfig(
        head=HeadConfig(hidden_dim=32, out_dim=16),
        ground_size_px=(224, 224),
        aerial_size_px=(518, 518),
    )
    save_matcher_checkpoint(tmp_path / "ck", ck, random_checkpoint_tensors(ck))
    engines = tmp_path / "engines"
    engines.mkdir()
    identity_onnx(engines / "matcher_ground.onnx", (1, 3, 224, 224), "descriptors")
    identity_onnx(engines / "matcher_aerial.onnx", (1, 3, 448, 448), "descriptors")
    cfg = LearnedMatcherConfig(
        checkpoint_path=str(tmp_path / "ck"), engine_dir=str(engines), backend="onnxruntime"
    )
    with pytest.raises(BackendError) as err:
        LearnedMatcher.from_config(cfg)
    message = str(err.value)
    assert "matcher_aerial.onnx takes 448x448" in message and "518x518" in message
    assert "aerial_size_px" in message and "--height 518 --width 518" in message
    fixed = LearnedMatcherConfig(
        checkpoint_path=str(tmp_path / "ck"),
        engine_dir=str(engines),
        backend="onnxruntime",
        aerial_size_px=(448, 448),
    )
    matcher = LearnedMatcher.from_config(fixed)
    assert matcher.aerial_size_px == (448, 448)
    matcher.close()


def test_backends_without_a_known_shape_are_not_checked() -> None:
    from cvgl_ros.backends.base import check_image_input_size

    class _NoShapes:
        input_names = ("images",)
        output_names = ("depth",)
        last_latency_s = float("nan")

        def run(self, inputs: object) -> dict[str, np.ndarray]:
            return {}

    check_image_input_size(_NoShapes(), (14, 14), "x", "y")  # type: ignore[arg-type]
