"""Ground-resolution-adaptive matching: GSD, north-up view, patch plan, scale bounds, NFA."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.camera import EquirectangularCamera, PinholeCamera
from cvgl_ros.core.config import GatingConfig, HeightConfig, LocalizerConfig, ViewConfig
from cvgl_ros.core.depth import ConstantRangeDepth
from cvgl_ros.core.gating import log10_nfa
from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.localizer import Localizer, scale_bounds_for
from cvgl_ros.core.mount import gravity_from_camera_for_mount, rot_x
from cvgl_ros.core.types import AerialPatch, Correspondences, GnssPrior, UInt8Array
from cvgl_ros.core.view import (
    MatchView,
    apply_affine,
    camera_ground_geometry,
    invert_affine,
    north_up_rotation_rad,
    plan_view,
    view_from_image,
)

CAM = PinholeCamera(400, 225, 222.0, 222.0, 199.5, 112.0)
NADIR = gravity_from_camera_for_mount("nadir")
WORLD = LocalEnu(46.8426, -91.9944)


def test_nadir_gsd_and_footprint() -> None:
    geom = camera_ground_geometry(CAM, NADIR, 36.7, max_off_nadir_rad=0.5)
    assert geom is not None
    gsd, radius = geom
    assert gsd == pytest.approx(36.7 / 222.0, rel=1e-6)
    half_diag_px = math.hypot(200.0, 112.5)
    assert radius == pytest.approx(half_diag_px * 36.7 / 222.0, rel=0.01)


def test_no_geometry_for_forward_cameras_and_panoramas() -> None:
    forward = gravity_from_camera_for_mount("forward", pitch_rad=math.radians(20.0))
    assert camera_ground_geometry(CAM, forward, 1.5, max_off_nadir_rad=0.5) is None
    tilted = NADIR @ rot_x(math.radians(40.0))  # 40 deg off nadir
    assert camera_ground_geometry(CAM, tilted, 50.0, max_off_nadir_rad=0.5) is None
    assert camera_ground_geometry(CAM, tilted, 50.0, max_off_nadir_rad=0.8) is not None
    pano = EquirectangularCamera(1024, 512)
    assert camera_ground_geometry(pano, NADIR, 10.0, max_off_nadir_rad=0.5) is None
    assert camera_ground_geometry(CAM, NADIR, 0.0, max_off_nadir_rad=0.5) is None


@settings(max_examples=40, deadline=None)
@given(
    yaw=st.floats(-math.pi, math.pi),
    roll_deg=st.floats(-5.0, 5.0),
    scale=st.floats(0.2, 1.0),
)
def test_north_up_view_puts_north_up_and_east_right(
    yaw: float, roll_deg: float, scale: float
) -> None:
    r_gc = NADIR @ rot_x(math.radians(roll_deg))
    rotation = north_up_rotation_rad(CAM, r_gc, yaw)
    assert rotation is not None
    affine, canvas, _ = view_from_image(CAM.width_px, CAM.height_px, MatchView(scale, rotation))
    # Ground points 1 m north and 1 m east of the point under the principal point (gravity
    # frame: x = body forward at ENU yaw, y = left).
    ray = CAM.rays(np.array([[CAM.cx_px, CAM.cy_px]])) @ r_gc.T
    centre = ray[0] * (30.0 / -ray[0, 2])
    north = np.array([math.sin(yaw), math.cos(yaw), 0.0])
    east = np.array([math.cos(yaw), -math.sin(yaw), 0.0])
    pts = np.stack([centre, centre + north, centre + east]) @ r_gc  # -> optical frame
    view = apply_affine(affine, CAM.project(pts))
    d_north, d_east = view[1] - view[0], view[2] - view[0]
    # North exactly up (-v), to within the perspective of a slightly tilted camera; east to the
    # right to within that and the resize's anisotropy (rounding the scaled size changes x and
    # y scales by up to 1 % at these scales, which shears right angles by up to 0.7 deg).
    assert abs(math.degrees(math.atan2(d_north[0], -d_north[1]))) < 0.05
    assert abs(math.degrees(math.atan2(d_east[1], d_east[0]))) < 1.0
    # The whole image lands on the canvas.
    corners = np.array([[-0.5, -0.5], [399.5, -0.5], [-0.5, 224.5], [399.5, 224.5]])
    v = apply_affine(affine, corners)
    assert np.all(v >= -0.5 - 1e-6) and np.all(v <= np.array(canvas) - 0.5 + 1e-6)


def test_view_affine_scale_is_exact_and_invertible() -> None:
    affine, canvas, resized = view_from_image(400, 225, MatchView(scale=0.5))
    assert resized == (200, 112) and canvas == (200, 112)
    p = np.array([[0.0, 0.0], [399.0, 224.0], [123.4, 56.7]])
    q = apply_affine(affine, p)
    np.testing.assert_allclose(q[:, 0], (p[:, 0] + 0.5) * 0.5 - 0.5)
    np.testing.assert_allclose(q[:, 1], (p[:, 1] + 0.5) * 112 / 225 - 0.5)
    np.testing.assert_allclose(apply_affine(invert_affine(affine), q), p, atol=1e-9)


def test_plan_matches_the_camera_gsd_within_the_map_limit() -> None:
    cfg = ViewConfig(adaptive=True)
    # Camera (0.165 m/px) finer than a 0.3 m/px map: patch at the camera GSD, image untouched.
    plan = plan_view(CAM, NADIR, 36.7, 0.3, 5.0, cfg)
    assert plan is not None
    assert plan.patch_m_per_px == pytest.approx(36.7 / 222.0)
    assert plan.view.scale == 1.0 and plan.view.rotation_rad == 0.0 and not plan.view.upright
    half = 0.5 * plan.patch_size_px * plan.patch_m_per_px
    assert half >= plan.footprint_radius_m + 3.0 * 5.0
    # A 2 m/px map is upsampled at most 2x (default): the camera image goes to 1 m/px.
    coarse = plan_view(CAM, NADIR, 36.7, 2.0, 5.0, cfg)
    assert coarse is not None
    assert coarse.patch_m_per_px == pytest.approx(1.0)
    assert coarse.view.scale == pytest.approx((36.7 / 222.0) / 1.0)
    four = plan_view(CAM, NADIR, 36.7, 2.0, 5.0, replace(cfg, max_map_upsample=4.0))
    assert four is not None and four.patch_m_per_px == pytest.approx(0.5)
    # A camera coarser than the map: the map is read at the camera's GSD.
    high = plan_view(CAM, NADIR, 400.0, 0.3, 5.0, cfg)
    assert high is not None and high.patch_m_per_px == pytest.approx(400.0 / 222.0)


def test_plan_respects_pixel_budgets_and_yaw_prior() -> None:
    cfg = ViewConfig(adaptive=True, max_patch_size_px=256)
    plan = plan_view(CAM, NADIR, 36.7, 0.1, 50.0, cfg)  # huge prior sigma
    assert plan is not None and plan.patch_size_px <= 256
    assert 0.5 * plan.patch_size_px * plan.patch_m_per_px >= plan.footprint_radius_m + 150.0
    big = PinholeCamera(4000, 3000, 3000.0, 3000.0, 1999.5, 1499.5)
    plan = plan_view(big, NADIR, 20.0, 0.05, 2.0, ViewConfig(adaptive=True))
    assert plan is not None and plan.view.scale * 4000 <= 1280 + 1
    upright = ViewConfig(adaptive=True, upright_max_yaw_sigma_rad=0.2)
    tight = plan_view(CAM, NADIR, 36.7, 0.3, 5.0, upright, 0.7, 0.05)
    loose = plan_view(CAM, NADIR, 36.7, 0.3, 5.0, upright, 0.7, 0.5)
    default = plan_view(CAM, NADIR, 36.7, 0.3, 5.0, ViewConfig(adaptive=True), 0.7, 0.05)
    assert default is not None and not default.view.upright  # upright is opt-in
    assert tight is not None and loose is not None
    assert tight.view.upright and not loose.view.upright
    assert tight.view.rotation_rad == loose.view.rotation_rad != 0.0
    off = plan_view(CAM, NADIR, 36.7, 0.3, 5.0, ViewConfig(adaptive=True, pre_rotate=False), 0.7)
    assert off is not None and off.view.rotation_rad == 0.0


def test_scale_bounds_from_height_and_metric_depth() -> None:
    cfg = LocalizerConfig(height=HeightConfig(ground_elevation_m=0.0, surface_relief_m=10.0))
    heights = np.full(50, -100.0)  # constant range 100 (depth units) below the camera
    low, high = scale_bounds_for(heights, cfg, height_m=40.0)  # type: ignore[misc]
    assert low < 0.4 < high
    assert low == pytest.approx((40.0 - 10.0 - 9.0) / 100.0)
    assert high == pytest.approx((40.0 + 9.0) / 100.0)
    low, high = scale_bounds_for(heights, cfg, metric_scale_sigma=0.1)  # type: ignore[misc]
    assert low == pytest.approx(1 / 1.3) and high == pytest.approx(1.3)
    assert scale_bounds_for(heights, cfg) is None
    gated = replace(cfg, gating=GatingConfig(scale_min=0.35, scale_max=0.45))
    assert scale_bounds_for(heights, gated, height_m=40.0) == pytest.approx((0.35, 0.45))


def test_nfa_grows_with_matches_and_chance_and_falls_with_inliers() -> None:
    assert log10_nfa(20, 2, 0.01) == math.inf
    assert log10_nfa(20, 8, 0.01) < log10_nfa(20, 6, 0.01)
    assert log10_nfa(200, 8, 0.01) > log10_nfa(20, 8, 0.01)
    assert log10_nfa(20, 8, 0.05) > log10_nfa(20, 8, 0.01)
    n, k, p = 30, 9, 0.003
    direct = (n - 2) * math.comb(n, k) * math.comb(k, 2) * p ** (k - 2)
    assert log10_nfa(n, k, p) == pytest.approx(math.log10(direct))


# --------------------------------------------------------------------------- localizer


class ResolutionSource:
    """Test double: blank patches at the requested size/resolution; a 0.3 m/px map."""

    def __init__(self) -> None:
        self.requests: list[tuple[int | None, float | None]] = []

    def native_m_per_px_at(self, lat_deg: float, lon_deg: float) -> float:
        return 0.3

    def patch_at(
        self,
        lat_deg: float,
        lon_deg: float,
        patch_size_px: int | None = None,
        patch_m_per_px: float | None = None,
    ) -> AerialPatch:
        self.requests.append((patch_size_px, patch_m_per_px))
        size = patch_size_px or 512
        return AerialPatch(
            image=np.zeros((size, size, 3), np.uint8),
            m_per_px=patch_m_per_px or 0.5,
            center_lat_deg=lat_deg,
            center_lon_deg=lon_deg,
            valid_mask=np.ones((size, size), bool),
        )


class ViewTruthMatcher:
    """Test double: true correspondences of a nadir camera at ``truth_en`` (world frame)."""

    def __init__(self, truth_en: np.ndarray, yaw: float, height_m: float) -> None:
        self.truth_en, self.yaw, self.height_m = truth_en, yaw, height_m
        self.views: list[MatchView] = []
        self.plain_calls = 0

    def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
        self.plain_calls += 1
        return self._truth(patch)

    def match_view(
        self, ground_image: UInt8Array, patch: AerialPatch, view: MatchView
    ) -> Correspondences:
        self.views.append(view)
        return self._truth(patch)

    def _truth(self, patch: AerialPatch) -> Correspondences:
        rng = np.random.default_rng(0)
        px = np.stack([rng.uniform(0, 399, 200), rng.uniform(0, 224, 200)], axis=1)
        fwd = -(px[:, 1] - CAM.cy_px) / CAM.fy_px * self.height_m
        left = -(px[:, 0] - CAM.cx_px) / CAM.fx_px * self.height_m
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        ce, cn = WORLD.to_en(patch.center_lat_deg, patch.center_lon_deg)
        en = np.stack([c * fwd - s * left, s * fwd + c * left], axis=1)
        en += self.truth_en - np.array([float(ce), float(cn)])
        return Correspondences(px, patch.en_to_pixel(en), np.full(200, 0.9))


def _prior(en: np.ndarray, alt_m: float | None) -> GnssPrior:
    lat, lon = WORLD.to_wgs84(en[0], en[1])
    return GnssPrior(float(lat), float(lon), np.eye(2) * 25.0, stamp_s=1.0, alt_m=alt_m)


def test_localizer_plans_the_patch_and_view_from_the_fix_altitude() -> None:
    truth = np.array([10.0, -5.0])
    matcher = ViewTruthMatcher(truth, 0.8, 36.7)
    source = ResolutionSource()
    cfg = LocalizerConfig(
        view=ViewConfig(adaptive=True, upright_max_yaw_sigma_rad=0.2),
        height=HeightConfig(ground_elevation_m=160.0),
        gating=GatingConfig(scale_min=0.01, scale_max=100.0),
    )
    loc = Localizer(cfg, matcher, ConstantRangeDepth(100.0), source)
    est = loc.localize(
        np.zeros((225, 400, 3), np.uint8), CAM, _prior(truth + 3.0, 196.7), NADIR, 1.0, 0.75, 0.05
    )
    assert est.ok, est.reasons
    size, mpp = source.requests[-1]
    assert mpp == pytest.approx(36.7 / 222.0) and size is not None
    view = matcher.views[-1]
    assert view.upright and view.scale == 1.0 and view.m_per_px == pytest.approx(mpp)
    assert est.scale == pytest.approx(0.367, rel=0.01)
    assert est.debug is not None and est.debug.scale_bounds is not None
    low, high = est.debug.scale_bounds
    assert low < 0.367 < high and high < 0.5  # the height bounds the scale
    assert est.debug.camera_height_m == pytest.approx(36.7)
    assert math.isfinite(est.debug.log10_nfa) and est.debug.log10_nfa < -6


def test_localizer_without_altitude_uses_the_depth_range_and_plain_matchers() -> None:
    truth = np.array([0.0, 0.0])
    matcher = ViewTruthMatcher(truth, -1.0, 50.0)
    source = ResolutionSource()
    cfg = LocalizerConfig(view=ViewConfig(adaptive=True), height=HeightConfig())
    loc = Localizer(cfg, matcher, ConstantRangeDepth(50.0), source)
    est = loc.localize(np.zeros((225, 400, 3), np.uint8), CAM, _prior(truth, None), NADIR, 1.0)
    assert est.ok, est.reasons
    assert source.requests[-1][1] == pytest.approx(50.0 / 222.0)  # GSD from depth.range_m
    assert est.debug is not None and est.debug.scale_bounds is None  # no height from a fix

    class Plain:
        def __init__(self, inner: ViewTruthMatcher) -> None:
            self.inner = inner

        def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
            return self.inner.match(ground_image, patch)

    plain = Plain(ViewTruthMatcher(truth, -1.0, 50.0))
    loc = Localizer(cfg, plain, ConstantRangeDepth(50.0), ResolutionSource())
    est = loc.localize(np.zeros((225, 400, 3), np.uint8), CAM, _prior(truth, None), NADIR, 1.0)
    assert est.ok and plain.inner.plain_calls == 1


def test_significance_gate_refuses_a_few_inliers_among_many_matches() -> None:
    truth = np.array([0.0, 0.0])
    matcher = ViewTruthMatcher(truth, 0.3, 36.7)

    class FewGood(ViewTruthMatcher):
        def match_view(
            self, ground_image: UInt8Array, patch: AerialPatch, view: MatchView
        ) -> Correspondences:
            good = self._truth(patch)
            rng = np.random.default_rng(3)
            w, h = patch.size_px
            junk = rng.uniform(0, [w, h], (192, 2))
            aerial = np.concatenate([good.aerial_px[:8], junk])
            return Correspondences(good.ground_px, aerial, good.weights)

    few = FewGood(truth, 0.3, 36.7)
    cfg = LocalizerConfig(
        view=ViewConfig(adaptive=True),
        height=HeightConfig(ground_elevation_m=0.0),
        gating=GatingConfig(min_inliers=6, min_inlier_ratio=0.0, max_log10_nfa=-6.0),
    )
    image = np.zeros((225, 400, 3), np.uint8)
    ok = Localizer(cfg, matcher, ConstantRangeDepth(36.7), ResolutionSource())
    assert ok.localize(image, CAM, _prior(truth, 36.7), NADIR, 1.0).ok
    weak = Localizer(cfg, few, ConstantRangeDepth(36.7), ResolutionSource())
    est = weak.localize(image, CAM, _prior(truth, 36.7), NADIR, 1.0)
    assert not est.ok and any("not significant" in r for r in est.reasons), est.reasons


def test_metric_ground_plane_depth_bounds_the_scale() -> None:
    """Issue 14: with metric ground-plane depth the scale is bounded near 1 (not 1e-3..1e3),
    so a camera height that is wrong by 2x can no longer give a confident pose."""
    from cvgl_ros.core.depth import GroundPlaneDepth

    pitch = math.radians(15.0)
    r_gc = gravity_from_camera_for_mount("forward", pitch_rad=pitch)
    rng = np.random.default_rng(4)
    ground = np.stack(
        [rng.uniform(3.0, 30.0, 200), rng.uniform(-10.0, 10.0, 200), np.full(200, -3.2)], axis=1
    )
    px = CAM.project(ground @ r_gc)
    inside = np.all(np.isfinite(px), axis=1) & (px[:, 0] >= 0) & (px[:, 0] < 400)
    inside &= (px[:, 1] >= 0) & (px[:, 1] < 225)
    px, planar = px[inside], ground[inside, :2]

    class Forward:
        def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
            ce, cn = WORLD.to_en(patch.center_lat_deg, patch.center_lon_deg)
            en = planar - np.array([float(ce), float(cn)])
            return Correspondences(px, patch.en_to_pixel(en), np.full(len(px), 0.9))

    image = np.zeros((225, 400, 3), np.uint8)
    prior = _prior(np.zeros(2), None)
    cfg = LocalizerConfig()
    right = Localizer(cfg, Forward(), GroundPlaneDepth(3.2), ResolutionSource())
    est = right.localize(image, CAM, prior, r_gc, 1.0)
    assert est.ok and est.scale == pytest.approx(1.0, abs=0.01)
    assert est.debug is not None and est.debug.scale_bounds == pytest.approx((1 / 1.3, 1.3))
    wrong = Localizer(cfg, Forward(), GroundPlaneDepth(1.6), ResolutionSource())
    est = wrong.localize(image, CAM, prior, r_gc, 1.0)
    assert not est.ok  # the true scale (2) is outside [0.77, 1.3]
    free = Localizer(
        cfg, Forward(), GroundPlaneDepth(1.6, metric_scale_sigma=1.0), ResolutionSource()
    )
    assert free.localize(image, CAM, prior, r_gc, 1.0).scale == pytest.approx(2.0, rel=0.01)
