"""Localizer end to end with test doubles for the matcher and the patch source."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.camera import CameraModel, PinholeCamera
from cvgl_ros.core.config import GatingConfig, LocalizerConfig
from cvgl_ros.core.depth import ConstantRangeDepth, GroundPlaneDepth
from cvgl_ros.core.errors import NoImageryError
from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.localizer import Localizer
from cvgl_ros.core.mount import gravity_from_camera_for_mount
from cvgl_ros.core.types import (
    AerialPatch,
    Correspondences,
    FloatArray,
    GnssPrior,
    PoseStatus,
    UInt8Array,
)

WORLD = LocalEnu(47.3769, 8.5417)  # the "true" world frame of the doubles
CAM = PinholeCamera(640, 480, 400.0, 400.0, 319.5, 239.5)
IMAGE = np.zeros((480, 640, 3), dtype=np.uint8)


class GridPatchSource:
    """Test double: a blank north-up patch centred on the request."""

    def __init__(self, size_px: int = 512, m_per_px: float = 0.5) -> None:
        self.size_px = size_px
        self.m_per_px = m_per_px
        self.calls = 0

    def patch_at(self, lat_deg: float, lon_deg: float) -> AerialPatch:
        self.calls += 1
        return AerialPatch(
            image=np.zeros((self.size_px, self.size_px, 3), dtype=np.uint8),
            m_per_px=self.m_per_px,
            center_lat_deg=lat_deg,
            center_lon_deg=lon_deg,
            valid_mask=np.ones((self.size_px, self.size_px), dtype=bool),
            source_id="grid",
        )


@dataclass
class TruthMatcher:
    """Test double: correct correspondences for a known camera pose, plus outliers.

    ``ground_px`` are pixels whose body-frame planar positions are ``planar_m`` (given by the
    scene geometry); the aerial pixel of each is where the true pose puts it in the patch.
    """

    camera_world_en_m: FloatArray
    yaw_enu_rad: float
    ground_px: FloatArray
    planar_m: FloatArray
    outlier_ratio: float = 0.4
    noise_m: float = 0.3
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
        rng = np.random.default_rng(self.seed)
        ce, cn = WORLD.to_en(patch.center_lat_deg, patch.center_lon_deg)
        cam_in_patch = self.camera_world_en_m - np.array([float(ce), float(cn)])
        c, s = math.cos(self.yaw_enu_rad), math.sin(self.yaw_enu_rad)
        en = self.planar_m @ np.array([[c, -s], [s, c]]).T + cam_in_patch
        en += rng.normal(0.0, self.noise_m, en.shape)
        aerial_px = patch.en_to_pixel(en)
        n = len(aerial_px)
        out = rng.random(n) < self.outlier_ratio
        w, h = patch.size_px
        aerial_px[out] = rng.uniform(0, [w, h], (int(out.sum()), 2))
        weights = np.where(out, rng.uniform(0.0, 0.6, n), rng.uniform(0.4, 1.0, n))
        return Correspondences(self.ground_px.copy(), aerial_px, weights)


def _nadir_scene(altitude_m: float, n: int = 300, seed: int = 1) -> tuple[FloatArray, FloatArray]:
    rng = np.random.default_rng(seed)
    px = np.stack([rng.uniform(0, 639, n), rng.uniform(0, 479, n)], axis=1)
    planar = np.stack(
        [-(px[:, 1] - CAM.cy_px) / CAM.fy_px, -(px[:, 0] - CAM.cx_px) / CAM.fx_px], axis=1
    )
    return px, planar * altitude_m


def _forward_scene(
    height_m: float, pitch_rad: float, n: int = 300, seed: int = 2
) -> tuple[FloatArray, FloatArray]:
    rng = np.random.default_rng(seed)
    r = gravity_from_camera_for_mount("forward", pitch_rad=pitch_rad)
    ground = np.stack(
        [rng.uniform(3.0, 40.0, n), rng.uniform(-15.0, 15.0, n), np.full(n, -height_m)], axis=1
    )
    px = CAM.project(ground @ r)
    inside = (px[:, 0] >= 0) & (px[:, 0] < 640) & (px[:, 1] >= 0) & (px[:, 1] < 480)
    return px[inside], ground[inside, :2]


def _prior(world_en: FloatArray, sigma_m: float = 5.0) -> GnssPrior:
    lat, lon = WORLD.to_wgs84(world_en[0], world_en[1])
    return GnssPrior(float(lat), float(lon), np.eye(2) * sigma_m**2, stamp_s=10.0)


def _expected_map_en(loc: Localizer, world_en: FloatArray) -> tuple[float, float]:
    assert loc.map_origin is not None
    lat, lon = WORLD.to_wgs84(world_en[0], world_en[1])
    e, n = loc.map_origin.to_en(lat, lon)
    return float(e), float(n)


def test_nadir_end_to_end_unknown_altitude() -> None:
    truth = np.array([120.0, -80.0])
    px, planar = _nadir_scene(altitude_m=90.0)
    matcher = TruthMatcher(truth, 0.8, px, planar)
    patches = GridPatchSource()
    loc = Localizer(LocalizerConfig(), matcher, ConstantRangeDepth(1.0), patches)
    prior = _prior(truth + np.array([6.0, -4.0]))
    est = loc.localize(IMAGE, CAM, prior, gravity_from_camera_for_mount("nadir"), 12.5)
    assert est.ok, est.reasons
    assert loc.map_origin == LocalEnu(prior.lat_deg, prior.lon_deg)  # first prior = origin
    e, n = _expected_map_en(loc, truth)
    assert est.east_m == pytest.approx(e, abs=0.3)
    assert est.north_m == pytest.approx(n, abs=0.3)
    assert est.yaw_enu_rad == pytest.approx(0.8, abs=0.01)
    assert est.scale == pytest.approx(90.0, rel=0.01)  # altitude / range_m
    lat, lon = WORLD.to_wgs84(truth[0], truth[1])
    assert est.lat_deg == pytest.approx(float(lat), abs=5e-6)
    assert est.lon_deg == pytest.approx(float(lon), abs=5e-6)
    assert est.stamp_s == 12.5
    assert est.num_matches == 300
    assert 0.5 < est.inlier_ratio < 0.7
    assert set(est.timings_s) >= {"patch", "match", "depth", "lift", "ransac", "total"}
    cov = est.cov_en_yaw
    assert cov.shape == (3, 3) and np.all(np.linalg.eigvalsh(cov) > 0)
    # The map's georeferencing sigma (default 1 m) and the attitude term (inlier range, here
    # 1-1.41 x the altitude, times the roll/pitch sigma) are added; the match is far better.
    georef_m = LocalizerConfig().covariance.map_georef_sigma_m
    attitude_m = est.scale * LocalizerConfig().covariance.attitude_sigma_rad
    low, high = math.hypot(georef_m, attitude_m), math.hypot(0.3, georef_m, 1.42 * attitude_m)
    assert low <= math.sqrt(cov[0, 0]) < high
    dbg = est.debug
    assert dbg is not None and dbg.points_g is not None and dbg.inlier_mask is not None
    assert dbg.patch is not None and dbg.patch_from_camera is not None
    assert dbg.points_g.shape == (300, 2) and dbg.inlier_mask.sum() == est.inliers


def test_forward_end_to_end_ground_plane_with_map_origin() -> None:
    truth = np.array([-35.0, 60.0])
    pitch = math.radians(12.0)
    px, planar = _forward_scene(1.6, pitch)
    matcher = TruthMatcher(truth, -2.4, px, planar, outlier_ratio=0.5)
    origin = LocalEnu(47.37, 8.53)  # about 1 km away: tangent planes differ slightly
    loc = Localizer(
        LocalizerConfig(), matcher, GroundPlaneDepth(1.6), GridPatchSource(), map_origin=origin
    )
    est = loc.localize(
        IMAGE,
        CAM,
        _prior(truth + 3.0),
        gravity_from_camera_for_mount("forward", pitch_rad=pitch),
        1.0,
        yaw_prior_rad=-2.3,
        yaw_prior_sigma_rad=0.2,
    )
    assert est.ok, est.reasons
    e, n = _expected_map_en(loc, truth)
    assert est.east_m == pytest.approx(e, abs=0.3)
    assert est.north_m == pytest.approx(n, abs=0.3)
    # Yaw in the map frame differs from the patch-frame yaw by the meridian convergence.
    lat0, lon0 = WORLD.to_wgs84(truth[0], truth[1])
    lat1, lon1 = WORLD.to_wgs84(truth[0] + 10 * math.cos(-2.4), truth[1] + 10 * math.sin(-2.4))
    e0, n0 = origin.to_en(lat0, lon0)
    e1, n1 = origin.to_en(lat1, lon1)
    expected_yaw = math.atan2(float(n1 - n0), float(e1 - e0))
    assert est.yaw_enu_rad == pytest.approx(expected_yaw, abs=0.01)
    assert est.scale == pytest.approx(1.0, abs=0.02)  # metric ground-plane depth


def test_failures_are_reported_not_raised() -> None:
    truth = np.array([0.0, 0.0])
    px, planar = _nadir_scene(50.0)
    good = TruthMatcher(truth, 0.0, px, planar)
    grav = gravity_from_camera_for_mount("nadir")
    prior = _prior(truth)

    class NoImagery:
        def patch_at(self, lat_deg: float, lon_deg: float) -> AerialPatch:
            raise NoImageryError("outside coverage")

    class Exploding:
        def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
            raise RuntimeError("boom")

    class NanDepth:
        def depth_at(
            self,
            ground_image: UInt8Array,
            camera: CameraModel,
            pixels_px: FloatArray,
            gravity_from_camera: FloatArray,
        ) -> FloatArray:
            return np.full(len(pixels_px), np.nan)

    def run(loc: Localizer, **kw: object) -> PoseStatus:
        args: dict[str, object] = {
            "image": IMAGE,
            "camera": CAM,
            "prior": prior,
            "gravity_from_camera": grav,
            "stamp_s": 1.0,
        }
        args.update(kw)
        est = loc.localize(**args)  # type: ignore[arg-type]
        assert not est.ok and est.reasons
        assert "total" in est.timings_s
        return est.status

    cfg = LocalizerConfig()
    depth = ConstantRangeDepth(1.0)
    assert run(Localizer(cfg, good, depth, NoImagery())) is PoseStatus.NO_IMAGERY
    assert run(Localizer(cfg, Exploding(), depth, GridPatchSource())) is PoseStatus.ERROR
    assert run(Localizer(cfg, good, NanDepth(), GridPatchSource())) is PoseStatus.TOO_FEW_POINTS
    few = TruthMatcher(truth, 0.0, px[:5], planar[:5])
    assert run(Localizer(cfg, few, depth, GridPatchSource())) is PoseStatus.TOO_FEW_MATCHES
    loc = Localizer(cfg, good, depth, GridPatchSource())
    assert run(loc, image=np.zeros((10, 10, 3), np.uint8)) is PoseStatus.BAD_IMAGE
    assert run(loc, image=np.zeros((480, 640, 3), np.float32)) is PoseStatus.BAD_IMAGE
    assert run(loc, gravity_from_camera=np.full((3, 3), np.nan)) is PoseStatus.ERROR
    assert run(loc, prior=None) is PoseStatus.NO_FIX
    assert run(loc, stamp_s=math.nan) is PoseStatus.ERROR
    # A pose far from a confident prior: every hypothesis violates the position prior.
    far = _prior(truth + np.array([300.0, 0.0]), sigma_m=2.0)
    clean = TruthMatcher(truth, 0.0, px, planar, outlier_ratio=0.0)
    assert run(Localizer(cfg, clean, depth, GridPatchSource()), prior=far) is (
        PoseStatus.OUTSIDE_PRIOR
    )
    # With outliers some chance hypothesis lies inside the prior: it is gated too.
    assert run(loc, prior=far) in (PoseStatus.OUTSIDE_PRIOR, PoseStatus.TOO_FEW_INLIERS)
    # Pure outliers: nothing consistent -> gated.
    noise = TruthMatcher(truth, 0.0, px, planar, outlier_ratio=1.0)
    strict = LocalizerConfig(gating=GatingConfig(min_inliers=30))
    status = run(Localizer(strict, noise, depth, GridPatchSource()))
    assert status in (
        PoseStatus.TOO_FEW_INLIERS,
        PoseStatus.LOW_INLIER_RATIO,
        PoseStatus.OUTSIDE_PRIOR,
        PoseStatus.SCALE_OUT_OF_BOUNDS,
    )


def test_nan_correspondences_are_dropped() -> None:
    truth = np.array([10.0, 10.0])
    px, planar = _nadir_scene(60.0)

    class Dirty(TruthMatcher):
        def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
            c = super().match(ground_image, patch)
            g = c.ground_px.copy()
            g[:7] = np.nan
            return Correspondences(g, c.aerial_px, c.weights)

    loc = Localizer(
        LocalizerConfig(),
        Dirty(truth, 0.3, px, planar),
        ConstantRangeDepth(1.0),
        GridPatchSource(),
    )
    est = loc.localize(IMAGE, CAM, _prior(truth), gravity_from_camera_for_mount("nadir"), 0.0)
    assert est.ok, est.reasons
    assert est.num_matches == 293


def test_constructor_checks_and_map_origin() -> None:
    with pytest.raises(TypeError):
        Localizer(None, None, None, None)  # type: ignore[arg-type]
    px, planar = _nadir_scene(50.0)
    loc = Localizer(
        LocalizerConfig(keep_debug=False),
        TruthMatcher(np.zeros(2), 0.0, px, planar),
        ConstantRangeDepth(1.0),
        GridPatchSource(),
    )
    assert loc.map_origin is None
    origin = LocalEnu(47.3769, 8.5417)
    loc.set_map_origin(origin)
    est = loc.localize(
        IMAGE, CAM, _prior(np.zeros(2)), gravity_from_camera_for_mount("nadir"), 0.0
    )
    assert est.ok and est.debug is None
    assert est.east_m == pytest.approx(0.0, abs=0.3) and est.north_m == pytest.approx(0.0, abs=0.3)


def test_yaw_prior_rejects_a_contradicting_pose() -> None:
    truth = np.array([5.0, 5.0])
    px, planar = _nadir_scene(70.0)
    clean = TruthMatcher(truth, 1.0, px, planar, outlier_ratio=0.0)
    loc = Localizer(LocalizerConfig(), clean, ConstantRangeDepth(1.0), GridPatchSource())
    grav = gravity_from_camera_for_mount("nadir")
    ok = loc.localize(IMAGE, CAM, _prior(truth), grav, 0.0, yaw_prior_rad=1.1)
    assert ok.ok and ok.yaw_enu_rad == pytest.approx(1.0, abs=0.01)
    bad = loc.localize(
        IMAGE, CAM, _prior(truth), grav, 0.0, yaw_prior_rad=-2.0, yaw_prior_sigma_rad=0.05
    )
    assert bad.status is PoseStatus.OUTSIDE_PRIOR
    # An invalid yaw prior is ignored (logged), not fatal.
    est = loc.localize(IMAGE, CAM, _prior(truth), grav, 0.0, yaw_prior_rad=math.nan)
    assert est.ok


def test_panorama_end_to_end() -> None:
    from cvgl_ros.core.camera import EquirectangularCamera

    pano = EquirectangularCamera(1024, 512)
    image = np.zeros((512, 1024, 3), dtype=np.uint8)
    rng = np.random.default_rng(9)
    r = gravity_from_camera_for_mount("forward")
    ang = rng.uniform(-math.pi, math.pi, 300)
    dist = rng.uniform(3.0, 30.0, 300)
    ground = np.stack([dist * np.cos(ang), dist * np.sin(ang), np.full(300, -2.2)], axis=1)
    px = pano.project(ground @ r)
    truth = np.array([-20.0, 15.0])
    matcher = TruthMatcher(truth, 2.0, px, ground[:, :2], outlier_ratio=0.5)
    loc = Localizer(LocalizerConfig(), matcher, GroundPlaneDepth(2.2), GridPatchSource())
    est = loc.localize(image, pano, _prior(truth), r, 3.0)
    assert est.ok, est.reasons
    e, n = _expected_map_en(loc, truth)
    assert est.east_m == pytest.approx(e, abs=0.3) and est.north_m == pytest.approx(n, abs=0.3)
    assert est.yaw_enu_rad == pytest.approx(2.0, abs=0.01)


def test_zero_gnss_covariance_does_not_gate_everything() -> None:
    truth = np.array([40.0, -30.0])
    px, planar = _nadir_scene(80.0)
    loc = Localizer(
        LocalizerConfig(),
        TruthMatcher(truth, 0.2, px, planar),
        ConstantRangeDepth(1.0),
        GridPatchSource(),
    )
    lat, lon = WORLD.to_wgs84(truth[0] + 2.0, truth[1] - 1.5)
    prior = GnssPrior(float(lat), float(lon), np.zeros((2, 2)))
    est = loc.localize(IMAGE, CAM, prior, gravity_from_camera_for_mount("nadir"), 0.0)
    assert est.ok, est.reasons


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    east=st.floats(-100.0, 100.0),
    north=st.floats(-100.0, 100.0),
    yaw=st.floats(-math.pi, math.pi),
    altitude=st.floats(30.0, 150.0),
    prior_dx=st.floats(-8.0, 8.0),
    prior_dy=st.floats(-8.0, 8.0),
)
def test_nadir_property(
    east: float, north: float, yaw: float, altitude: float, prior_dx: float, prior_dy: float
) -> None:
    truth = np.array([east, north])
    px, planar = _nadir_scene(altitude, n=200)
    loc = Localizer(
        LocalizerConfig(),
        TruthMatcher(truth, yaw, px, planar, outlier_ratio=0.5),
        ConstantRangeDepth(1.0),
        GridPatchSource(),
        map_origin=WORLD,
    )
    prior = _prior(truth + np.array([prior_dx, prior_dy]))
    est = loc.localize(IMAGE, CAM, prior, gravity_from_camera_for_mount("nadir"), 0.0)
    assert est.ok, est.reasons
    assert est.east_m == pytest.approx(east, abs=0.3)
    assert est.north_m == pytest.approx(north, abs=0.3)
    assert abs(math.remainder(est.yaw_enu_rad - yaw, 2 * math.pi)) < 0.01
    assert est.scale == pytest.approx(altitude, rel=0.01)
