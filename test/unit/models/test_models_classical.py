"""Classical matcher: recovers a known similarity between two views of a real orthophoto."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvgl_ros.core.interfaces import Matcher
from cvgl_ros.core.types import AerialPatch
from cvgl_ros.models import ClassicalMatcher, ClassicalMatcherConfig, MatcherConfig, build_matcher

PATCH_SIZE_PX = 512
GROUND_SIZE_PX = 384


@pytest.fixture(scope="module")
def ortho_rgb(shared_data: Path) -> np.ndarray:
    """SpaceNet Atlanta panchromatic 0.5 m/px, 2-98 % stretched to 8 bit, as RGB."""
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(shared_data / "spacenet_solaris_samples" / "sample_geotiff.tif") as ds:
        band = ds.read(1).astype(np.float64)
    lo, hi = np.percentile(band, [2, 98])
    gray = np.clip((band - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _patch(image: np.ndarray, valid: np.ndarray | None = None) -> AerialPatch:
    if valid is None:
        valid = np.ones(image.shape[:2], dtype=bool)
    return AerialPatch(
        image=image,
        m_per_px=0.5,
        center_lat_deg=33.7,
        center_lon_deg=-84.4,
        valid_mask=valid,
        source_id="spacenet-test",
    )


def _ground_from_aerial(angle_deg: float, scale: float) -> np.ndarray:
    """(2, 3) similarity mapping aerial pixels to ground pixels (centre to centre)."""
    c_a = (PATCH_SIZE_PX - 1) / 2.0
    m = cv2.getRotationMatrix2D((c_a, c_a), angle_deg, scale)
    m[:, 2] += (GROUND_SIZE_PX - PATCH_SIZE_PX) / 2.0
    return m


def _views(ortho: np.ndarray, angle_deg: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    aerial = np.ascontiguousarray(ortho[150 : 150 + PATCH_SIZE_PX, 200 : 200 + PATCH_SIZE_PX])
    ground = cv2.warpAffine(
        aerial, _ground_from_aerial(angle_deg, scale), (GROUND_SIZE_PX, GROUND_SIZE_PX)
    )
    return aerial, ground


def _check_recovers(
    matches_ground: np.ndarray, matches_aerial: np.ndarray, angle_deg: float, scale: float
) -> None:
    est, inliers = cv2.estimateAffinePartial2D(
        matches_ground, matches_aerial, method=cv2.RANSAC, ransacReprojThreshold=2.0
    )
    assert est is not None
    assert int(inliers.sum()) >= 20
    truth = cv2.invertAffineTransform(_ground_from_aerial(angle_deg, scale))
    est_scale = math.hypot(est[0, 0], est[1, 0])
    true_scale = math.hypot(truth[0, 0], truth[1, 0])
    assert est_scale == pytest.approx(true_scale, rel=0.01)
    est_angle = math.degrees(math.atan2(est[1, 0], est[0, 0]))
    true_angle = math.degrees(math.atan2(truth[1, 0], truth[0, 0]))
    assert abs((est_angle - true_angle + 180.0) % 360.0 - 180.0) < 0.5
    corners = np.array([[0, 0, 1], [383, 0, 1], [0, 383, 1], [383, 383, 1]], dtype=np.float64)
    assert np.max(np.abs(corners @ est.T - corners @ truth.T)) < 2.0


@pytest.mark.data
@pytest.mark.parametrize(("angle_deg", "scale"), [(0.0, 1.0), (37.0, 0.8), (-120.0, 1.25)])
def test_sift_recovers_similarity(ortho_rgb: np.ndarray, angle_deg: float, scale: float) -> None:
    aerial, ground = _views(ortho_rgb, angle_deg, scale)
    matcher = ClassicalMatcher(ClassicalMatcherConfig(feature="sift"))
    corr = matcher.match(ground, _patch(aerial))
    assert len(corr) >= 30
    assert np.all((corr.weights >= 0.0) & (corr.weights <= 1.0))
    assert np.all(np.diff(corr.weights) <= 0.0), "weights sorted in decreasing order"
    _check_recovers(corr.ground_px, corr.aerial_px, angle_deg, scale)


@pytest.mark.data
@pytest.mark.parametrize("feature", ["akaze", "orb"])
def test_binary_features_recover_similarity(ortho_rgb: np.ndarray, feature: str) -> None:
    aerial, ground = _views(ortho_rgb, 55.0, 0.9)
    matcher = ClassicalMatcher(ClassicalMatcherConfig(feature=feature))  # type: ignore[arg-type]
    corr = matcher.match(ground, _patch(aerial))
    _check_recovers(corr.ground_px, corr.aerial_px, 55.0, 0.9)


@pytest.mark.data
def test_downscaled_detection_keeps_original_pixel_coordinates(ortho_rgb: np.ndarray) -> None:
    aerial, ground = _views(ortho_rgb, 20.0, 1.0)
    cfg = ClassicalMatcherConfig(max_side_px=256)
    corr = ClassicalMatcher(cfg).match(ground, _patch(aerial))
    assert corr.aerial_px.max() > 300, "aerial coordinates are in full-resolution pixels"
    est, _ = cv2.estimateAffinePartial2D(corr.ground_px, corr.aerial_px, method=cv2.RANSAC)
    truth = cv2.invertAffineTransform(_ground_from_aerial(20.0, 1.0))
    centre = np.array([191.5, 191.5, 1.0])
    assert np.linalg.norm(est @ centre - truth @ centre) < 3.0


@pytest.mark.data
def test_valid_mask_restricts_aerial_keypoints(ortho_rgb: np.ndarray) -> None:
    aerial, ground = _views(ortho_rgb, 10.0, 1.0)
    valid = np.zeros(aerial.shape[:2], dtype=bool)
    valid[:, 256:] = True
    cfg = ClassicalMatcherConfig(mask_erode_px=4)
    corr = ClassicalMatcher(cfg).match(ground, _patch(aerial, valid))
    assert len(corr) >= 10
    assert corr.aerial_px[:, 0].min() >= 256 + 4 - 1.0
    empty = ClassicalMatcher(cfg).match(
        ground, _patch(aerial, np.zeros(aerial.shape[:2], dtype=bool))
    )
    assert len(empty) == 0


@pytest.mark.data
def test_mutual_check_and_ratio_only_remove_matches(ortho_rgb: np.ndarray) -> None:
    aerial, ground = _views(ortho_rgb, 30.0, 1.0)
    patch = _patch(aerial)
    loose = ClassicalMatcher(ClassicalMatcherConfig(mutual=False, ratio=0.95)).match(ground, patch)
    strict = ClassicalMatcher(ClassicalMatcherConfig(mutual=True, ratio=0.7)).match(ground, patch)
    assert 0 < len(strict) < len(loose)
    assert strict.weights.min() >= 1.0 - 0.7 - 1e-12
    loose_pairs = {
        (tuple(g), tuple(a)) for g, a in zip(loose.ground_px, loose.aerial_px, strict=True)
    }
    assert all(
        (tuple(g), tuple(a)) in loose_pairs
        for g, a in zip(strict.ground_px, strict.aerial_px, strict=True)
    )


@pytest.mark.data
def test_aerial_features_cached_per_patch(ortho_rgb: np.ndarray) -> None:
    aerial, ground = _views(ortho_rgb, 0.0, 1.0)
    matcher = ClassicalMatcher(ClassicalMatcherConfig(cache_size=1))
    first = matcher.match(ground, _patch(aerial))
    second = matcher.match(ground, _patch(aerial.copy()))
    assert (matcher.cache_misses, matcher.cache_hits) == (1, 1)
    np.testing.assert_array_equal(first.aerial_px, second.aerial_px)
    matcher.match(ground, _patch(np.ascontiguousarray(aerial[::-1])))
    assert matcher.cache_misses == 2


def test_mono_input_and_blank_images() -> None:
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (256, 256), dtype=np.uint8), (5, 5), 1.5)
    rgb = np.repeat(texture[:, :, None], 3, axis=2)
    matcher = build_matcher(MatcherConfig(kind="classical"))
    assert isinstance(matcher, Matcher)
    corr = matcher.match(texture, _patch(rgb))
    assert len(corr) > 50
    np.testing.assert_allclose(corr.ground_px, corr.aerial_px, atol=1e-6)
    blank = matcher.match(np.zeros((64, 64, 3), np.uint8), _patch(rgb))
    assert len(blank) == 0
    assert blank.ground_px.shape == (0, 2)


def test_bad_inputs_raise() -> None:
    matcher = ClassicalMatcher()
    patch = _patch(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        matcher.match(np.zeros((32, 32, 3), np.float32), patch)
    with pytest.raises(ValueError, match="image must be"):
        matcher.match(np.zeros((32, 32, 2), np.uint8), patch)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"feature": "surf"}, "feature"),
        ({"ratio": 0.0}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"max_features": 2}, "max_features"),
        ({"clahe_clip_limit": 0.0}, "clahe_clip_limit"),
        ({"max_side_px": 10}, "max_side_px"),
        ({"mask_erode_px": -1}, "mask_erode_px"),
        ({"cache_size": -1}, "cache_size"),
    ],
)
def test_config_validation_names_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ClassicalMatcherConfig(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- adaptive views


def _camera_of(
    aerial: np.ndarray, angle_deg: float, upscale: float
) -> tuple[np.ndarray, np.ndarray]:
    """A camera image finer than the patch (``upscale`` camera px per patch px), rotated by
    ``angle_deg``; returns it and its (2, 3) camera-from-aerial similarity."""
    size = round(GROUND_SIZE_PX * upscale)
    c_a = (PATCH_SIZE_PX - 1) / 2.0
    m = cv2.getRotationMatrix2D((c_a, c_a), angle_deg, upscale)
    m[:, 2] += (size - 1) / 2.0 - c_a
    return cv2.warpAffine(aerial, m, (size, size), flags=cv2.INTER_CUBIC), m


@pytest.mark.data
@pytest.mark.parametrize("upright", [False, True])
def test_match_view_downsamples_and_derotates_into_original_pixels(
    ortho_rgb: np.ndarray, upright: bool
) -> None:
    from cvgl_ros.core.view import MatchView

    aerial = np.ascontiguousarray(ortho_rgb[150 : 150 + PATCH_SIZE_PX, 200 : 200 + PATCH_SIZE_PX])
    camera, cam_from_aerial = _camera_of(aerial, 63.0, 2.0)
    # The view undoes the camera's rotation (getRotationMatrix2D's matrix is the rotation by
    # -angle in MatchView's convention) and its 2x finer resolution.
    view = MatchView(scale=0.5, rotation_rad=math.radians(63.0), upright=upright)
    matcher = ClassicalMatcher(ClassicalMatcherConfig(feature="sift", max_ground_features=2000))
    corr = matcher.match_view(camera, _patch(aerial), view)
    assert len(corr) >= 40
    predicted = corr.aerial_px @ cam_from_aerial[:, :2].T + cam_from_aerial[:, 2]
    residual = np.linalg.norm(predicted - corr.ground_px, axis=1)
    assert np.median(residual) < 1.0, "ground pixels are in the original camera image"
    assert np.mean(residual < 3.0) > 0.8


@pytest.mark.data
def test_upright_descriptors_need_the_derotated_view(ortho_rgb: np.ndarray) -> None:
    """Upright descriptors really drop rotation invariance: they match a derotated view and
    fail on a rotated one (so the view's rotation is what makes them work)."""
    from cvgl_ros.core.view import MatchView

    aerial = np.ascontiguousarray(ortho_rgb[150 : 150 + PATCH_SIZE_PX, 200 : 200 + PATCH_SIZE_PX])
    camera, cam_from_aerial = _camera_of(aerial, 140.0, 1.0)
    correct = {}
    for rotation_deg in (140.0, 0.0):
        view = MatchView(scale=1.0, rotation_rad=math.radians(rotation_deg), upright=True)
        matcher = ClassicalMatcher(ClassicalMatcherConfig(feature="sift"))
        corr = matcher.match_view(camera, _patch(aerial), view)
        predicted = corr.aerial_px @ cam_from_aerial[:, :2].T + cam_from_aerial[:, 2]
        good = np.linalg.norm(predicted - corr.ground_px, axis=1) < 2.0
        correct[rotation_deg] = int(good.sum())
        if rotation_deg == 140.0:
            assert good.mean() > 0.9
    assert correct[140.0] > 100 and correct[0.0] < 10, correct


def test_upright_keypoints_are_one_per_location() -> None:
    from cvgl_ros.models.classical import _upright_keypoints

    kps = [
        cv2.KeyPoint(10.0, 20.0, 5.0, 30.0, 0.5),
        cv2.KeyPoint(10.0, 20.0, 5.0, 200.0, 0.9),
        cv2.KeyPoint(40.0, 20.0, 5.0, 10.0, 0.3),
    ]
    up = _upright_keypoints(kps)
    assert len(up) == 2
    assert all(k.angle == 0.0 for k in up)
    assert max(k.response for k in up) == pytest.approx(0.9)
