"""The learned per-frame path: float32 dual softmax, mutual/top-K selection, aerial feature
cache hits (no aerial network run, no pixel hashing), single-threaded BLAS, backend "auto"."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.backends.base import BackendBase
from cvgl_ros.core.types import AerialPatch
from cvgl_ros.models import cache as cache_module
from cvgl_ros.models.matching import dual_softmax, select_matches, single_threaded_blas

PATCH_PX = 14


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _reference_dual_softmax(
    a: np.ndarray, b: np.ndarray, temperature: float, dustbin: float
) -> np.ndarray:
    """The float64 textbook form (two independent stable softmaxes)."""
    n, m = len(a), len(b)
    aug = np.full((n + 1, m + 1), dustbin, dtype=np.float64)
    aug[:n, :m] = a.astype(np.float64) @ b.astype(np.float64).T / temperature
    row = np.exp(aug - aug.max(axis=1, keepdims=True))
    row /= row.sum(axis=1, keepdims=True)
    col = np.exp(aug - aug.max(axis=0, keepdims=True))
    col /= col.sum(axis=0, keepdims=True)
    return (row * col)[:n, :m]


@pytest.mark.parametrize(
    ("temperature", "dustbin"), [(0.1, 1.0), (0.05, -2.0), (1.0, 0.0), (0.01, 3.0), (0.005, -1.0)]
)
def test_dual_softmax_float32_matches_float64_reference(
    temperature: float, dustbin: float
) -> None:
    # 0.01 and 0.005 span more than 80 logits: the two-softmax fallback path.
    rng = np.random.default_rng(int(1000 * temperature))
    a = _unit(rng.standard_normal((37, 16)))
    b = _unit(rng.standard_normal((53, 16)))
    b[:10] = a[:10]  # some true matches
    got = dual_softmax(a, b, temperature, dustbin)
    assert got.dtype == np.float32 and got.shape == (37, 53)
    assert np.all(np.isfinite(got))
    # float32 logits carry a relative error of ~1e-7 x |logit| (|logit| <= 1 / temperature).
    ref = _reference_dual_softmax(a, b, temperature, dustbin)
    np.testing.assert_allclose(got, ref, rtol=2e-7 / temperature, atol=2e-6)


def _reference_select(
    p: np.ndarray, top_k: int, mutual: bool, min_probability: float
) -> list[tuple[int, int]]:
    keep = p > min_probability
    if mutual:
        keep &= (p >= p.max(axis=1, keepdims=True)) & (p >= p.max(axis=0, keepdims=True))
    rows, cols = np.nonzero(keep)
    order = np.argsort(-p[rows, cols], kind="stable")[:top_k]
    return sorted(zip(rows[order].tolist(), cols[order].tolist(), strict=True))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 30),
    m=st.integers(1, 30),
    top_k=st.integers(1, 40),
    mutual=st.booleans(),
    min_probability=st.sampled_from([0.0, 0.001, 0.01]),
    seed=st.integers(0, 2**31 - 1),
)
def test_select_matches_equals_brute_force(
    n: int, m: int, top_k: int, mutual: bool, min_probability: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    a = _unit(rng.standard_normal((n, 8)))
    b = _unit(rng.standard_normal((m, 8)))
    p = dual_softmax(a, b, 0.1, float(rng.uniform(-1, 2)))  # continuous: no ties
    ia, ib, prob = select_matches(p, top_k, mutual, min_probability)
    assert ia.dtype == ib.dtype == np.int64 and prob.dtype == np.float64
    assert np.all(np.diff(prob) <= 0) and len(prob) <= top_k
    assert sorted(zip(ia.tolist(), ib.tolist(), strict=True)) == _reference_select(
        p, top_k, mutual, min_probability
    )
    np.testing.assert_array_equal(prob, p[ia, ib].astype(np.float64))


def test_single_threaded_blas_restores_the_thread_count() -> None:
    from cvgl_ros.models.matching import _openblas_controls

    a = np.ones((64, 64), np.float32)
    controls = _openblas_controls()
    before = [int(get()) for _, get in controls]
    with single_threaded_blas():
        assert all(int(get()) == 1 for _, get in controls)
        np.testing.assert_allclose(a @ a, 64.0)
    assert [int(get()) for _, get in controls] == before
    with pytest.raises(RuntimeError), single_threaded_blas():  # restored on errors too
        raise RuntimeError("boom")
    assert [int(get()) for _, get in controls] == before


# --- matcher with counting numpy "networks" (no torch needed for the runs) ----------------


class CountingFeatures(BackendBase):
    """An InferenceBackend double: (1, 3, H, W) -> (1, H/14, W/14, D) unit descriptors from a
    fixed random projection of each 14x14 block's pixels; counts its runs."""

    input_names = ("images",)
    output_names = ("descriptors",)

    def __init__(self, dim: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.projection = np.random.default_rng(seed).standard_normal((3 * PATCH_PX**2, dim))
        self.runs = 0
        self.last_latency_s = 0.001

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["images"][0]
        _, h, w = x.shape
        blocks = x.reshape(3, h // PATCH_PX, PATCH_PX, w // PATCH_PX, PATCH_PX)
        flat = blocks.transpose(1, 3, 0, 2, 4).reshape(h // PATCH_PX, w // PATCH_PX, -1)
        flat = flat - flat.mean(axis=-1, keepdims=True)
        self.runs += 1
        return {"descriptors": _unit(flat @ self.projection)[None]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> object:
    pytest.importorskip("torch")
    from cvgl_ros.models.checkpoint import (
        DualSoftmaxConfig,
        HeadConfig,
        MatcherCheckpointConfig,
        load_matcher_checkpoint,
        save_matcher_checkpoint,
    )
    from cvgl_ros.models.networks import random_checkpoint_tensors

    cfg = MatcherCheckpointConfig(
        head=HeadConfig(hidden_dim=64, out_dim=32),
        matcher=DualSoftmaxConfig(temperature=0.05, dustbin_score=1.0),
        ground_size_px=(112, 112),
        aerial_size_px=(224, 224),
    )
    path = tmp_path_factory.mktemp("ck")
    save_matcher_checkpoint(path, cfg, random_checkpoint_tensors(cfg))
    return load_matcher_checkpoint(path)


def _matcher(
    checkpoint: object, **kw: object
) -> tuple[object, CountingFeatures, CountingFeatures]:
    from cvgl_ros.models.config import LearnedMatcherConfig
    from cvgl_ros.models.learned import LearnedMatcher

    ground, aerial = CountingFeatures(), CountingFeatures()
    cfg = LearnedMatcherConfig(top_k=50, **kw)  # type: ignore[arg-type]
    return LearnedMatcher(ground, aerial, checkpoint, cfg), ground, aerial  # type: ignore[arg-type]


def test_cache_hit_runs_no_aerial_network_and_hashes_once(
    checkpoint: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    matcher, ground_net, aerial_net = _matcher(checkpoint)
    assert matcher.ground_backend is ground_net  # type: ignore[attr-defined]
    assert matcher.aerial_backend is aerial_net  # type: ignore[attr-defined]
    keys = []
    real_key = cache_module.patch_key

    def counting_key(patch: AerialPatch) -> tuple[object, ...]:
        keys.append(1)
        return real_key(patch)

    monkeypatch.setattr(cache_module, "patch_key", counting_key)
    rng = np.random.default_rng(0)
    aerial = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    patch = AerialPatch(aerial, 0.5, 10.0, 20.0, np.ones((224, 224), bool), "t")
    frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(4)]
    results = [matcher.match(f, patch) for f in frames]  # type: ignore[attr-defined]
    assert ground_net.runs == 4 and aerial_net.runs == 1
    assert len(keys) == 1, "the same patch object is not re-hashed"
    stats = matcher.cache.stats()  # type: ignore[attr-defined]
    assert stats["hits"] == 3 and stats["misses"] == 1
    assert all(len(r) > 0 for r in results)
    assert set(matcher.last_latency_s) == {"ground", "matching"}  # type: ignore[attr-defined]
    # An equal copy (another object) is found by content; different pixels are a miss.
    copy = AerialPatch(aerial.copy(), 0.5, 10.0, 20.0, np.ones((224, 224), bool), "t")
    matcher.match(frames[0], copy)  # type: ignore[attr-defined]
    assert aerial_net.runs == 1 and len(keys) == 2
    changed = aerial.copy()
    changed[0, 0] ^= 1
    other = AerialPatch(changed, 0.5, 10.0, 20.0, np.ones((224, 224), bool), "t")
    matcher.match(frames[0], other)  # type: ignore[attr-defined]
    assert aerial_net.runs == 2
    assert "aerial" in matcher.last_latency_s  # type: ignore[attr-defined]


def test_cached_aerial_features_are_read_only(checkpoint: object) -> None:
    matcher, _, _ = _matcher(checkpoint)
    img = np.random.default_rng(1).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    patch = AerialPatch(img, 0.5, 1.0, 2.0, np.ones((224, 224), bool), "t")
    described = matcher.cache.get(patch)  # type: ignore[attr-defined]
    assert not described.descriptors.flags.writeable and not described.points_px.flags.writeable


def test_identical_views_match_token_to_token(checkpoint: object) -> None:
    matcher, _, _ = _matcher(checkpoint, ground_size_px=(224, 224))
    img = np.random.default_rng(2).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    patch = AerialPatch(img, 0.5, 1.0, 2.0, np.ones((224, 224), bool), "t")
    corr = matcher.match(img, patch)  # type: ignore[attr-defined]
    assert len(corr) == 50
    np.testing.assert_allclose(corr.ground_px, corr.aerial_px)


def test_match_view_derotates_the_camera_image(checkpoint: object) -> None:
    """Features that are not rotation invariant match a rotated camera image only through the
    north-up view; ground pixels come back in the camera image's own coordinates."""
    from cvgl_ros.core.view import MatchView

    matcher, _, _ = _matcher(checkpoint, ground_size_px=(224, 224))
    img = np.random.default_rng(2).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    patch = AerialPatch(img, 0.5, 1.0, 2.0, np.ones((224, 224), bool), "t")
    camera = np.ascontiguousarray(np.rot90(img))  # content turned 90 deg counter-clockwise
    # rot90: camera (u, v) = (v_img, 223 - u_img); the view turns it back.
    view = MatchView(scale=1.0, rotation_rad=math.pi / 2)
    corr = matcher.match_view(camera, patch, view)  # type: ignore[attr-defined]
    assert len(corr) == 50
    expected = np.stack([corr.aerial_px[:, 1], 223.0 - corr.aerial_px[:, 0]], axis=1)
    np.testing.assert_allclose(corr.ground_px, expected, atol=1e-6)
    plain = matcher.match(camera, patch)  # type: ignore[attr-defined]
    direct = np.stack([plain.aerial_px[:, 1], 223.0 - plain.aerial_px[:, 0]], axis=1)
    assert np.mean(np.linalg.norm(plain.ground_px - direct, axis=1) < 1.0) < 0.2


def test_localizer_frames_reuse_aerial_features_and_run_depth_once(checkpoint: object) -> None:
    """Through the core Localizer: one aerial network run for several frames, one depth
    network run per frame (depth sampled only at the matched pixels)."""
    from cvgl_ros.core.camera import PinholeCamera
    from cvgl_ros.core.config import LocalizerConfig
    from cvgl_ros.core.localizer import Localizer
    from cvgl_ros.core.mount import gravity_from_camera_for_mount
    from cvgl_ros.core.types import GnssPrior
    from cvgl_ros.models.config import DepthModelConfig
    from cvgl_ros.models.depth import DepthAnythingDepth

    class CountingDepth(CountingFeatures):
        output_names = ("depth",)

        def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.runs += 1
            x = inputs["images"]
            return {"depth": 1.0 + x[:, 0]}  # disparity in [1, 2]: depth 0.5-1 (relative)

    matcher, _, aerial_net = _matcher(checkpoint)
    depth_net = CountingDepth()
    depth = DepthAnythingDepth(depth_net, DepthModelConfig(input_size_px=(56, 56)))  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    aerial = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    patch = AerialPatch(aerial, 0.5, 48.0, 11.0, np.ones((224, 224), bool), "t")

    class OnePatch:
        calls = 0

        def patch_at(self, lat_deg: float, lon_deg: float) -> AerialPatch:
            self.calls += 1
            return patch

    loc = Localizer(LocalizerConfig(), matcher, depth, OnePatch())  # type: ignore[arg-type]
    cam = PinholeCamera(160, 120, 100.0, 100.0, 79.5, 59.5)
    gravity = gravity_from_camera_for_mount("forward", pitch_rad=0.3)
    for i in range(3):
        img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        prior = GnssPrior(48.0, 11.0, np.eye(2) * 4.0, stamp_s=0.1 * i)
        est = loc.localize(img, cam, prior, gravity, stamp_s=0.1 * i)
        assert "match" in est.timings_s and "depth" in est.timings_s, est.reasons
    assert aerial_net.runs == 1
    assert depth_net.runs == 3 and depth.runs == 3


def test_backend_auto_resolution(tmp_path: Path) -> None:
    from cvgl_ros.backends.base import resolve_backend_kind

    onnx = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    assert resolve_backend_kind("auto", "cpu", onnx) == "torch", "files missing"
    onnx[0].write_bytes(b"x")
    assert resolve_backend_kind("auto", "cpu", onnx) == "torch", "one file missing"
    onnx[1].write_bytes(b"x")
    pytest.importorskip("onnxruntime")
    assert resolve_backend_kind("auto", "cpu", onnx) == "onnxruntime"
    assert resolve_backend_kind("torch", "cpu", onnx) == "torch"
    assert resolve_backend_kind("auto", "cuda", onnx, [tmp_path / "x.engine"]) == "onnxruntime"
    with pytest.raises(ValueError, match="backend kind"):
        resolve_backend_kind("tflite", "cpu")


def test_auto_refuses_half_exported_matcher_and_missing_depth_file(
    tmp_path: Path, checkpoint: object
) -> None:
    """ "auto" never silently falls back to torch when files were configured but are missing."""
    from cvgl_ros.backends.errors import BackendError
    from cvgl_ros.models.checkpoint import save_matcher_checkpoint
    from cvgl_ros.models.config import DepthModelConfig, LearnedMatcherConfig
    from cvgl_ros.models.depth import DepthAnythingDepth
    from cvgl_ros.models.learned import LearnedMatcher

    ck = checkpoint
    save_matcher_checkpoint(tmp_path / "ck", ck.config, ck.tensors)  # type: ignore[attr-defined]
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "matcher_ground.onnx").write_bytes(b"x")
    cfg = LearnedMatcherConfig(
        checkpoint_path=str(tmp_path / "ck"), engine_dir=str(tmp_path / "engines")
    )
    with pytest.raises(BackendError, match=r"matcher_aerial\.onnx not found"):
        LearnedMatcher.from_config(cfg)
    with pytest.raises(BackendError, match=r"engine_path .* not found"):
        DepthAnythingDepth.from_config(DepthModelConfig(engine_path=str(tmp_path / "d.onnx")))


@pytest.mark.parametrize(("scale", "rotation_rad"), [(1.0, 0.0), (0.37, 0.9), (0.61, -2.4)])
def test_render_view_maps_view_pixels_back_to_the_image(scale: float, rotation_rad: float) -> None:
    """The returned image_from_view is the exact inverse of how the view was rendered: on a
    linear ramp, every view pixel shows the value of the image point it maps back to."""
    from cvgl_ros.core.view import MatchView, apply_affine
    from cvgl_ros.models.preprocess import render_view

    vv, uu = np.mgrid[0:150, 0:200].astype(np.float64)
    ramp = (0.5 * uu + 0.8 * vv).astype(np.float32)
    view_img, inside, image_from_view = render_view(ramp, MatchView(scale, rotation_rad))
    ys, xs = np.nonzero(inside)
    pick = np.random.default_rng(0).choice(len(xs), 300, replace=False)
    view_px = np.stack([xs[pick], ys[pick]], axis=1).astype(np.float64)
    back = apply_affine(image_from_view, view_px)
    interior = np.all((back > 2.0) & (back < np.array([197.0, 147.0])), axis=1)
    expected = 0.5 * back[interior, 0] + 0.8 * back[interior, 1]
    got = view_img[ys[pick][interior], xs[pick][interior]]
    assert interior.sum() > 100
    np.testing.assert_allclose(got, expected, atol=0.75)
