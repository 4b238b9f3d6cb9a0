"""Classical matcher speed work: exact BLAS matching, ground downscale, feature caps, no
keypoint bias, and the aerial feature cache hit through the localizer's patch reuse."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from cvgl_ros.core.camera import PinholeCamera
from cvgl_ros.core.config import LocalizerConfig, PatchReuseConfig
from cvgl_ros.core.depth import ConstantRangeDepth
from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.localizer import Localizer
from cvgl_ros.core.mount import gravity_from_camera_for_mount
from cvgl_ros.core.types import AerialPatch, GnssPrior, PoseStatus
from cvgl_ros.models import classical
from cvgl_ros.models.classical import (
    ClassicalMatcher,
    ClassicalMatcherConfig,
    nearest_neighbours_l2,
)
from cvgl_ros.sim.synthetic_map import (
    SyntheticMapConfig,
    generate_synthetic_orthophoto,
    synthetic_world,
)


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """(384, 384, 3) uint8 procedural orthophoto (fields, roads, buildings, trees)."""
    cfg = SyntheticMapConfig(size_px=384, num_buildings=60, num_trees=300, seed=3)
    return generate_synthetic_orthophoto(cfg)


def _patch(image: np.ndarray) -> AerialPatch:
    return AerialPatch(
        image=image,
        m_per_px=0.5,
        center_lat_deg=47.0,
        center_lon_deg=8.0,
        valid_mask=np.ones(image.shape[:2], dtype=bool),
        source_id="speed-test",
    )


def _brute_force(q: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
    d = np.sqrt(((q[:, None, :].astype(np.float64) - t[None, :, :]) ** 2).sum(-1))
    order = np.argsort(d, axis=1)
    rows = np.arange(len(q))
    best = order[:, 0]
    back = np.argmin(d, axis=0)
    return best, d[rows, best], d[rows, order[:, 1]], back[best] == rows


@pytest.mark.parametrize("block_elements", [1 << 22, 37])
def test_blas_nearest_neighbours_equal_brute_force(
    monkeypatch: pytest.MonkeyPatch, block_elements: int
) -> None:
    # Small blocks exercise the running column minimum across blocks.
    monkeypatch.setattr(classical, "_DISTANCE_BLOCK_ELEMENTS", block_elements)
    rng = np.random.default_rng(4)
    train = rng.integers(0, 120, (90, 128)).astype(np.float32)
    # Queries near some train descriptors (clear nearest neighbours), others random.
    query = np.concatenate(
        [train[rng.choice(90, 40, replace=False)] + rng.normal(0, 3, (40, 128)), train[:5]]
    ).astype(np.float32)
    query = np.concatenate([query, rng.integers(0, 120, (30, 128)).astype(np.float32)])
    best, d1, d2, mutual = nearest_neighbours_l2(query, train)
    ref_best, ref_d1, ref_d2, ref_mutual = _brute_force(query, train)
    np.testing.assert_array_equal(best, ref_best)
    np.testing.assert_allclose(d1, ref_d1, atol=0.05)
    np.testing.assert_allclose(d2, ref_d2, atol=0.05)
    np.testing.assert_array_equal(mutual, ref_mutual)
    assert mutual.sum() >= 40  # the planted pairs are mutual
    with pytest.raises(ValueError, match="shapes"):
        nearest_neighbours_l2(query[:, :64], train)
    with pytest.raises(ValueError, match="train"):
        nearest_neighbours_l2(query, train[:1])


def _bf_reference(
    matcher: ClassicalMatcher, ground: np.ndarray, aerial: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The previous implementation: OpenCV brute-force kNN + full reverse pass."""
    g = matcher.describe(ground, aerial=False)
    a = matcher.describe(aerial)
    norm = cv2.NORM_L2 if matcher.config.feature == "sift" else cv2.NORM_HAMMING
    bf = cv2.BFMatcher(norm, crossCheck=False)
    pairs = []
    for p in bf.knnMatch(g.descriptors, a.descriptors, k=2):
        if len(p) == 2 and p[1].distance > 0 and p[0].distance / p[1].distance < 0.8:
            pairs.append((p[0].queryIdx, p[0].trainIdx))
    back = {m.queryIdx: m.trainIdx for m in bf.match(a.descriptors, g.descriptors)}
    kept = [(q, t) for q, t in pairs if back.get(t) == q]
    return g.points_px[[q for q, _ in kept]], a.points_px[[t for _, t in kept]]


def _pair_set(ground_px: np.ndarray, aerial_px: np.ndarray) -> set[tuple[float, ...]]:
    return {(*g, *a) for g, a in zip(ground_px.tolist(), aerial_px.tolist(), strict=True)}


@pytest.mark.parametrize("feature", ["sift", "orb"])
def test_fast_matching_returns_the_brute_force_matches(texture: np.ndarray, feature: str) -> None:
    m = cv2.getRotationMatrix2D((191.5, 191.5), 33.0, 0.9)
    ground = cv2.warpAffine(texture, m, (384, 384))
    matcher = ClassicalMatcher(ClassicalMatcherConfig(feature=feature))  # type: ignore[arg-type]
    corr = matcher.match(ground, _patch(texture))
    ref_g, ref_a = _bf_reference(matcher, ground, texture)
    assert len(corr) >= 30
    assert _pair_set(corr.ground_px, corr.aerial_px) == _pair_set(ref_g, ref_a)


def test_sift_keypoints_have_no_upscale_bias(texture: np.ndarray) -> None:
    # The ground copy is detected at half resolution: a quarter-pixel bias of the first octave
    # would show as a 0.25 px offset between ground and aerial coordinates of the same point.
    cfg = ClassicalMatcherConfig(ground_max_side_px=192)
    corr = ClassicalMatcher(cfg).match(texture, _patch(texture))
    d = corr.ground_px - corr.aerial_px
    close = np.linalg.norm(d, axis=1) < 2.0
    assert close.sum() >= 100
    offset_px = np.abs(np.median(d[close], axis=0))
    if classical._SIFT_PRECISE_UPSCALE is False:
        # OpenCV < 4.8 has no precise upscaling: the documented quarter-pixel offset remains.
        assert np.all((offset_px > 0.15) & (offset_px < 0.35)), offset_px
        return
    assert np.all(offset_px < 0.05)


def test_sift_runs_on_opencv_without_precise_upscale(
    texture: np.ndarray, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenCV 4.5-4.7 (ROS 2 Humble/Jazzy apt) reject ``enable_precise_upscale``: SIFT must
    still run, without it, and the keyword is tried only once per process."""
    real_create = cv2.SIFT_create
    with_keyword: list[dict[str, object]] = []

    def sift_create_4_6(*args: object, **kwargs: object) -> object:
        if "enable_precise_upscale" in kwargs:
            with_keyword.append(kwargs)
            raise cv2.error(
                "OpenCV(4.6.0) :-1: error: (-5:Bad argument) in function 'SIFT_create'\n"
                "> 'enable_precise_upscale' is an invalid keyword argument for SIFT_create()"
            )
        return real_create(*args, **kwargs)

    monkeypatch.setattr(cv2, "SIFT_create", sift_create_4_6)
    monkeypatch.setattr(classical, "_SIFT_PRECISE_UPSCALE", None, raising=False)
    with caplog.at_level("WARNING", logger=classical.__name__):
        corr = ClassicalMatcher(ClassicalMatcherConfig(feature="sift")).match(
            texture, _patch(texture)
        )
        again = ClassicalMatcher(ClassicalMatcherConfig(feature="sift", max_features=300))
    assert len(corr) >= 100
    assert np.median(np.linalg.norm(corr.ground_px - corr.aerial_px, axis=1)) < 1.0
    assert len(again.describe(texture).points_px) <= 300
    assert len(with_keyword) == 1, "the keyword must be tried once, not per detector"
    assert sum("precise upscaling" in r.getMessage() for r in caplog.records) == 1


def test_ground_downscale_keeps_full_resolution_coordinates(texture: np.ndarray) -> None:
    cfg = ClassicalMatcherConfig(ground_max_side_px=128)
    matcher = ClassicalMatcher(cfg)
    ground = matcher.describe(texture, aerial=False)
    aerial = matcher.describe(texture)
    assert ground.points_px.max() > 300, "ground coordinates are in full-resolution pixels"
    assert len(ground.points_px) < len(aerial.points_px)
    corr = matcher.match(texture, _patch(texture))
    assert np.median(np.linalg.norm(corr.ground_px - corr.aerial_px, axis=1)) < 1.0


def test_feature_caps_per_image(texture: np.ndarray) -> None:
    cfg = ClassicalMatcherConfig(max_features=500, max_ground_features=60, ground_max_side_px=0)
    matcher = ClassicalMatcher(cfg)
    assert len(matcher.describe(texture, aerial=False).points_px) <= 60
    assert 60 < len(matcher.describe(texture).points_px) <= 500
    cfg = ClassicalMatcherConfig(max_features=500, max_aerial_features=80)
    matcher = ClassicalMatcher(cfg)
    assert len(matcher.describe(texture).points_px) <= 80
    assert len(matcher.describe(texture, aerial=False).points_px) > 80


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ground_max_side_px": 32}, "ground_max_side_px"),
        ({"max_ground_features": 3}, "max_ground_features"),
        ({"max_aerial_features": -1}, "max_aerial_features"),
    ],
)
def test_new_config_fields_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ClassicalMatcherConfig(**kwargs)  # type: ignore[arg-type]


class _WorldPatchSource:
    """Patches cut from an in-memory north-up world (exact for small offsets; counts calls)."""

    def __init__(self, world: AerialPatch, size_px: int) -> None:
        self.world = world
        self.size_px = size_px
        self.enu = LocalEnu(world.center_lat_deg, world.center_lon_deg)
        self.calls = 0

    def patch_at(self, lat_deg: float, lon_deg: float) -> AerialPatch:
        self.calls += 1
        e, n = self.enu.to_en(lat_deg, lon_deg)
        w, h = self.world.size_px
        u0 = round(w / 2 + float(e) / self.world.m_per_px) - self.size_px // 2
        v0 = round(h / 2 - float(n) / self.world.m_per_px) - self.size_px // 2
        crop = self.world.image[v0 : v0 + self.size_px, u0 : u0 + self.size_px]
        # The centre of the crop, exactly (pixel-snapped).
        ce = (u0 + self.size_px / 2 - w / 2) * self.world.m_per_px
        cn = (h / 2 - v0 - self.size_px / 2) * self.world.m_per_px
        lat, lon = self.enu.to_wgs84(ce, cn)
        return AerialPatch(
            image=np.ascontiguousarray(crop),
            m_per_px=self.world.m_per_px,
            center_lat_deg=float(lat),
            center_lon_deg=float(lon),
            valid_mask=np.ones((self.size_px, self.size_px), dtype=bool),
            source_id="world",
        )


def test_patch_reuse_hits_the_aerial_feature_cache_with_the_same_poses() -> None:
    render = pytest.importorskip("cvgl_ros.sim.render")
    world = synthetic_world(SyntheticMapConfig(size_px=768, seed=5))
    altitude_m = 60.0
    cam = PinholeCamera(320, 240, 277.0, 277.0, 159.5, 119.5)
    grav = gravity_from_camera_for_mount("nadir")
    enu = LocalEnu(world.center_lat_deg, world.center_lon_deg)
    track = [np.array([2.0 * k, 1.0 * k]) for k in range(4)]
    images = [
        render.render_nadir_view(world, cam, pos, altitude_m, 0.4 + 0.05 * k)
        for k, pos in enumerate(track)
    ]

    def run(reuse: PatchReuseConfig) -> tuple[list[tuple[float, float]], Localizer]:
        matcher = ClassicalMatcher(ClassicalMatcherConfig(ground_max_side_px=0))
        source = _WorldPatchSource(world, 320)
        loc = Localizer(
            LocalizerConfig(patch_reuse=reuse),
            matcher,
            ConstantRangeDepth(altitude_m),
            source,
            map_origin=enu,
        )
        out = []
        for k, (pos, image) in enumerate(zip(track, images, strict=True)):
            lat, lon = enu.to_wgs84(pos[0] + 3.0, pos[1] - 2.0)  # a biased prior
            prior = GnssPrior(float(lat), float(lon), np.eye(2) * 25.0, stamp_s=0.1 * k)
            est = loc.localize(image, cam, prior, grav, 0.1 * k)
            assert est.status is PoseStatus.OK, est.reasons
            out.append((est.east_m, est.north_m))
        return out, loc

    reused, loc = run(PatchReuseConfig())
    fresh, loc_fresh = run(PatchReuseConfig(max_offset_fraction=0.0))
    assert loc.patch_stats() == {"built": 1, "reused": 3}
    assert loc_fresh.patch_stats() == {"built": 4, "reused": 0}
    assert isinstance(loc.matcher, ClassicalMatcher)
    assert (loc.matcher.cache_misses, loc.matcher.cache_hits) == (1, 3)
    for (e1, n1), (e2, n2), truth in zip(reused, fresh, track, strict=True):
        assert math.hypot(e1 - truth[0], n1 - truth[1]) < 0.3
        assert math.hypot(e1 - e2, n1 - n2) < 0.1
