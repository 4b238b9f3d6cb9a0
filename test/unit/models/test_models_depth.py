"""Depth Anything V2: explicit architectures, both weight forms, depth provider behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cvgl_ros.core.interfaces import DepthProvider  # noqa: E402
from cvgl_ros.models import DepthConfig, DepthModelConfig, build_depth  # noqa: E402
from cvgl_ros.models.depth import (  # noqa: E402
    DepthAnythingDepth,
    depth_anything_config,
    depth_hf_to_original,
    load_depth_anything,
)
from cvgl_ros.models.errors import WeightsError  # noqa: E402

torch.set_num_threads(2)


def _randomised(metric: bool, seed: int) -> object:
    model = load_depth_anything(None, "small", metric, 20.0, num_layers=4)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.state_dict().values():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return model


def _assert_same(a: object, b: object) -> None:
    sa, sb = a.state_dict(), b.state_dict()  # type: ignore[attr-defined]
    assert set(sa) == set(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_small_v2_architecture_is_explicit() -> None:
    c = depth_anything_config("small")
    assert c.backbone_config.hidden_size == 384 and c.backbone_config.num_hidden_layers == 12
    assert list(c.backbone_config.out_indices) == [3, 6, 9, 12]
    assert c.fusion_hidden_size == 64 and list(c.neck_hidden_sizes) == [48, 96, 192, 384]
    assert c.depth_estimation_type == "relative"
    metric = depth_anything_config("small", metric=True, max_depth_m=80.0)
    assert metric.depth_estimation_type == "metric" and metric.max_depth == 80
    assert list(depth_anything_config("large").backbone_config.out_indices) == [5, 12, 18, 24]


@pytest.mark.parametrize("metric", [False, True])
@pytest.mark.slow
def test_hf_directory_round_trip(tmp_path: Path, metric: bool) -> None:
    model = _randomised(metric, 1)
    model.save_pretrained(tmp_path / "da")  # type: ignore[attr-defined]
    loaded = load_depth_anything(tmp_path / "da", metric=metric)
    _assert_same(model, loaded)
    with pytest.raises(WeightsError, match="metric"):
        load_depth_anything(tmp_path / "da", metric=not metric)


@pytest.mark.slow
def test_original_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _randomised(True, 2)
    original = depth_hf_to_original(model.state_dict())  # type: ignore[attr-defined]
    assert "depth_head.scratch.refinenet4.resConfUnit2.conv2.weight" in original
    assert "pretrained.blocks.3.attn.qkv.weight" in original
    path = tmp_path / "depth_anything_v2_metric_vkitti_vits.pth"
    torch.save(original, path)
    loaded = load_depth_anything(path, "small", True, 20.0, num_layers=4)
    _assert_same(model, loaded)
    bad = dict(original)
    bad["depth_head.extra.weight"] = torch.zeros(1)
    torch.save(bad, path)
    with pytest.raises(WeightsError, match="unexpected key"):
        load_depth_anything(path, "small", True, 20.0, num_layers=4)
    with pytest.raises(WeightsError, match="not found"):
        load_depth_anything(tmp_path / "nope.pth")


@pytest.mark.parametrize("metric", [False, True])
def test_depth_provider_samples_the_map(metric: bool) -> None:
    cfg = DepthModelConfig(input_size_px=(112, 112), metric=metric, max_depth_m=20.0)
    provider = DepthAnythingDepth.with_random_weights(cfg, num_layers=4)
    assert isinstance(provider, DepthProvider)
    img = np.random.default_rng(0).integers(0, 255, (90, 130, 3), dtype=np.uint8)
    dense = provider.depth_map(img)
    assert dense.shape == (90, 130)
    pix = np.array([[0.0, 0.0], [64.0, 45.0], [129.0, 89.0], [200.0, 10.0], [-3.0, 5.0]])
    d = provider.depth_at(img, None, pix, np.eye(3))  # type: ignore[arg-type]
    assert d.shape == (5,)
    assert np.all(np.isnan(d[3:])), "outside the image is unknown"
    np.testing.assert_allclose(d[1], dense[45, 64], rtol=1e-9, equal_nan=True)
    finite = dense[np.isfinite(dense)]
    assert finite.size > 0 and np.all(finite > 0)
    if metric:
        assert finite.max() <= 20.0 + 1e-6


def test_build_depth_model_kind_uses_config() -> None:
    with pytest.raises(ValueError, match="engine_path"):
        DepthModelConfig(backend="onnxruntime")
    from cvgl_ros.backends.errors import BackendError

    cfg = DepthConfig(
        kind="model",
        model=DepthModelConfig(backend="onnxruntime", engine_path="/nonexistent.onnx"),
    )
    with pytest.raises(BackendError, match="not found"):
        build_depth(cfg)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_model_depth_without_weights_is_refused_at_start_up(backend: str) -> None:
    # As the learned matcher refuses a missing backbone: a random network gives depth that
    # looks plausible and is meaningless.
    cfg = DepthConfig(kind="model", model=DepthModelConfig(backend=backend))  # type: ignore[arg-type]
    with pytest.raises(WeightsError, match=r"weights_path is required") as err:
        build_depth(cfg)
    assert "engine_path" in str(err.value) and "random" in str(err.value)


def test_bilinear_sampling_skips_unknown_neighbours() -> None:
    from cvgl_ros.models.depth import _bilinear

    grid = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, np.nan]])
    pts = np.array([[1.0, 0.0], [0.5, 0.5], [1.25, 0.0], [1.75, 0.0], [5.0, 0.0], [0.0, -2.0]])
    got = _bilinear(grid, pts)
    np.testing.assert_allclose(got[:3], [2.0, 2.5, 2.0])
    assert np.all(np.isnan(got[3:])), "mostly-unknown neighbourhood and outside -> NaN"
