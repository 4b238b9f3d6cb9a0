"""The covariance's attitude (roll/pitch) term: closed form, switches, and NEES under a tilt."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.camera import PinholeCamera
from cvgl_ros.core.config import CovarianceConfig, LocalizerConfig
from cvgl_ros.core.covariance import CHI2_3DOF_95, attitude_position_var_m2, nees, pose_covariance
from cvgl_ros.core.depth import ConstantRangeDepth, GroundPlaneDepth
from cvgl_ros.core.errors import InvalidInputError
from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.interfaces import DepthProvider
from cvgl_ros.core.localizer import Localizer, solve_patch_pose
from cvgl_ros.core.mount import gravity_from_camera_for_mount
from cvgl_ros.core.procrustes import Similarity2D
from cvgl_ros.core.types import (
    AerialPatch,
    Correspondences,
    FloatArray,
    GnssPrior,
    LocalizationDebug,
    UInt8Array,
)

WORLD = LocalEnu(47.3769, 8.5417)
CAM = PinholeCamera(640, 480, 400.0, 400.0, 319.5, 239.5)
IMAGE = np.zeros((480, 640, 3), dtype=np.uint8)
ALTITUDE_M = 80.0
TRUTH_EN_M = np.array([40.0, -25.0])
TRUTH_YAW_RAD = 0.6
# Only the attitude term and the residual-driven part: no map terms, tiny other floors.
ATTITUDE_ONLY = CovarianceConfig(
    aerial_sigma_px=0.0, map_georef_sigma_m=0.0, min_position_sigma_m=0.0, min_yaw_sigma_rad=1e-4
)


class _Patches:
    """Test double: a blank north-up patch centred on the request."""

    def patch_at(self, lat_deg: float, lon_deg: float) -> AerialPatch:
        return AerialPatch(
            image=np.zeros((512, 512, 3), dtype=np.uint8),
            m_per_px=0.5,
            center_lat_deg=lat_deg,
            center_lon_deg=lon_deg,
            valid_mask=np.ones((512, 512), dtype=bool),
            source_id="grid",
        )


@dataclass
class _NadirTruthMatcher:
    """Test double: exact matches of a level nadir camera over flat ground, plus outliers."""

    noise_m: float = 0.02
    outlier_ratio: float = 0.3
    n: int = 300
    seed: int = 0

    def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
        rng = np.random.default_rng(self.seed)
        px = np.stack([rng.uniform(0, 639, self.n), rng.uniform(0, 479, self.n)], axis=1)
        # Level nadir camera (image top = body +x): planar (forward, left) of each pixel.
        planar = ALTITUDE_M * np.stack(
            [-(px[:, 1] - CAM.cy_px) / CAM.fy_px, -(px[:, 0] - CAM.cx_px) / CAM.fx_px], axis=1
        )
        ce, cn = WORLD.to_en(patch.center_lat_deg, patch.center_lon_deg)
        c, s = math.cos(TRUTH_YAW_RAD), math.sin(TRUTH_YAW_RAD)
        en = planar @ np.array([[c, -s], [s, c]]).T + TRUTH_EN_M - [float(ce), float(cn)]
        en += rng.normal(0.0, self.noise_m, en.shape)
        aerial_px = patch.en_to_pixel(en)
        out = rng.random(self.n) < self.outlier_ratio
        aerial_px[out] = rng.uniform(0, 512, (int(out.sum()), 2))
        return Correspondences(px, aerial_px, np.ones(self.n))


def _tilt(delta_rad: float, axis_azimuth_rad: float) -> FloatArray:
    """Rotation by ``delta_rad`` about the horizontal axis at ``axis_azimuth_rad`` (Rodrigues)."""
    a = np.array([math.cos(axis_azimuth_rad), math.sin(axis_azimuth_rad), 0.0])
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + math.sin(delta_rad) * k + (1.0 - math.cos(delta_rad)) * (k @ k)


def _localize(
    depth: DepthProvider, cov: CovarianceConfig, tilt: FloatArray
) -> tuple[FloatArray, FloatArray, float, LocalizationDebug]:
    """(error (east, north, yaw), published covariance, scale, debug) of a nadir localization."""
    loc = Localizer(
        LocalizerConfig(covariance=cov), _NadirTruthMatcher(), depth, _Patches(), WORLD
    )
    lat, lon = WORLD.to_wgs84(TRUTH_EN_M[0] + 3.0, TRUTH_EN_M[1] - 2.0)
    prior = GnssPrior(float(lat), float(lon), np.eye(2) * 25.0, stamp_s=1.0)
    r_gc = tilt @ gravity_from_camera_for_mount("nadir")
    est = loc.localize(IMAGE, CAM, prior, r_gc, 1.0)
    assert est.ok, est.reasons
    err = np.array(
        [
            est.east_m - TRUTH_EN_M[0],
            est.north_m - TRUTH_EN_M[1],
            math.remainder(est.yaw_enu_rad - TRUTH_YAW_RAD, math.tau),
        ]
    )
    assert est.debug is not None
    return err, np.asarray(est.cov_en_yaw), est.scale, est.debug


def _centred_fit() -> tuple[FloatArray, FloatArray, Similarity2D]:
    rng = np.random.default_rng(3)
    src = rng.uniform(-30.0, 30.0, (200, 2))
    model = Similarity2D(1.0, 0.0, np.array([5.0, -2.0]))
    dst = src + model.translation_m + rng.normal(0.0, 0.2, src.shape)
    return src, dst, model


def test_config_validates_attitude_sigma() -> None:
    assert CovarianceConfig().attitude_sigma_rad == pytest.approx(math.radians(0.5), rel=0.01)
    assert CovarianceConfig(attitude_sigma_rad=0.0).attitude_sigma_rad == 0.0
    for bad in (-1e-3, math.nan, math.inf):
        with pytest.raises(ValueError, match="attitude_sigma_rad"):
            CovarianceConfig(attitude_sigma_rad=bad)


def test_attitude_term_is_the_closed_form() -> None:
    src, dst, model = _centred_fit()
    cfg = replace(ATTITUDE_ONLY, attitude_sigma_rad=0.01)
    without = pose_covariance(src, dst, model, config=cfg).cov_en_yaw
    with_range = pose_covariance(src, dst, model, config=cfg, inlier_range_m=120.0).cov_en_yaw
    expected = np.zeros((3, 3))
    expected[0, 0] = expected[1, 1] = (120.0 * 0.01) ** 2
    np.testing.assert_allclose(with_range - without, expected, atol=1e-12)
    assert attitude_position_var_m2(120.0, cfg) == pytest.approx(1.44)
    floor = pose_covariance(src, dst, model, config=cfg, inlier_range_m=120.0).floor_cov_en_yaw
    assert floor is not None
    assert floor[0, 0] == pytest.approx(1.44 + cfg.min_position_sigma_m**2)


def test_attitude_term_off_without_sigma_or_range() -> None:
    src, dst, model = _centred_fit()
    base = pose_covariance(src, dst, model, config=ATTITUDE_ONLY).cov_en_yaw
    zero = replace(ATTITUDE_ONLY, attitude_sigma_rad=0.0)
    np.testing.assert_array_equal(
        pose_covariance(src, dst, model, config=zero, inlier_range_m=500.0).cov_en_yaw, base
    )
    no_range = replace(ATTITUDE_ONLY, attitude_sigma_rad=0.05)
    np.testing.assert_array_equal(
        pose_covariance(src, dst, model, config=no_range).cov_en_yaw, base
    )
    assert attitude_position_var_m2(None, no_range) == 0.0
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(InvalidInputError, match="inlier_range_m"):
            pose_covariance(src, dst, model, config=no_range, inlier_range_m=bad)


def test_solve_patch_pose_uses_the_scaled_median_inlier_range() -> None:
    src, dst, _ = _centred_fit()
    ranges = np.full(len(src), 2.0)
    ranges[:10] = 1e6  # a few far points do not move the median
    cfg = LocalizerConfig(covariance=replace(ATTITUDE_ONLY, attitude_sigma_rad=0.01))
    args = (src / 4.0, dst, None, cfg, np.array([5.0, -2.0]), np.eye(2) * 100.0)
    with_ranges = solve_patch_pose(*args, point_ranges=ranges)
    plain = solve_patch_pose(*args)
    scale = with_ranges.ransac.model.scale
    assert scale == pytest.approx(4.0, rel=0.01)
    diff = with_ranges.covariance.cov_en_yaw - plain.covariance.cov_en_yaw
    np.testing.assert_allclose(np.diag(diff), [(scale * 2.0 * 0.01) ** 2] * 2 + [0.0], atol=1e-12)
    with pytest.raises(InvalidInputError, match="point_ranges"):
        solve_patch_pose(*args, point_ranges=ranges[:-1])
    with pytest.raises(InvalidInputError, match="point_ranges"):
        solve_patch_pose(*args, point_ranges=np.full(len(src), np.nan))


def test_localizer_passes_the_metric_range() -> None:
    # Constant z-depth 1 on a level nadir camera: a lifted point's range is sqrt(|g|² + 1) in
    # depth units; times the scale (the altitude) it is the metric camera-to-ground distance.
    depth = ConstantRangeDepth(1.0)
    cfg = replace(ATTITUDE_ONLY, attitude_sigma_rad=0.01)
    _, with_term, scale, dbg = _localize(depth, cfg, np.eye(3))
    _, without, _, _ = _localize(depth, replace(cfg, attitude_sigma_rad=0.0), np.eye(3))
    assert scale == pytest.approx(ALTITUDE_M, rel=0.01)
    assert dbg.points_g is not None and dbg.inlier_mask is not None
    g = dbg.points_g[dbg.inlier_mask]
    range_m = scale * float(np.median(np.sqrt(np.sum(g * g, axis=1) + 1.0)))
    # The camera's half-diagonal field of view is 45 degrees: ranges 1-1.41 x the altitude.
    assert ALTITUDE_M < range_m < 1.3 * ALTITUDE_M
    np.testing.assert_allclose(
        with_term - without, np.diag([(range_m * 0.01) ** 2] * 2 + [0.0]), atol=1e-9
    )


@settings(max_examples=12, deadline=None)
@given(
    delta_rad=st.floats(0.004, 0.03),
    azimuth_rad=st.floats(-math.pi, math.pi),
    ground_plane=st.booleans(),
)
def test_tilt_error_is_covered_by_the_attitude_term(
    delta_rad: float, azimuth_rad: float, ground_plane: bool
) -> None:
    depth: DepthProvider = (
        GroundPlaneDepth(ALTITUDE_M) if ground_plane else ConstantRangeDepth(1.0)
    )
    tilt = _tilt(delta_rad, azimuth_rad)
    err, cov, _, _ = _localize(depth, replace(ATTITUDE_ONLY, attitude_sigma_rad=delta_rad), tilt)
    # A tilt of delta moves a nadir fix by about altitude * delta ...
    shift_m = float(np.hypot(err[0], err[1]))
    assert shift_m > 0.5 * ALTITUDE_M * delta_rad
    # ... which the attitude term at sigma = delta covers (a 1-sigma error: NEES about 1-2) ...
    assert nees(err, cov) <= CHI2_3DOF_95
    # ... and which the residual-driven covariance alone cannot see.
    _, cov0, _, _ = _localize(depth, replace(ATTITUDE_ONLY, attitude_sigma_rad=0.0), tilt)
    assert nees(err, cov0) > CHI2_3DOF_95


def test_one_frame_can_carry_its_own_attitude_sigma() -> None:
    """``localize(..., attitude_sigma_rad=)`` replaces the configured term for that frame only:
    the pipeline passes the static mount's uncertainty when the expected IMU is missing."""
    depth = GroundPlaneDepth(ALTITUDE_M)
    cfg = LocalizerConfig(covariance=replace(ATTITUDE_ONLY, attitude_sigma_rad=0.0))
    loc = Localizer(cfg, _NadirTruthMatcher(), depth, _Patches(), WORLD)
    lat, lon = WORLD.to_wgs84(TRUTH_EN_M[0] + 3.0, TRUTH_EN_M[1] - 2.0)
    prior = GnssPrior(float(lat), float(lon), np.eye(2) * 25.0, stamp_s=1.0)
    # The body is tilted by 0.05 rad, which the static (level) mount does not know.
    r_gc = _tilt(0.05, 0.7) @ gravity_from_camera_for_mount("nadir")
    plain = loc.localize(IMAGE, CAM, prior, r_gc, 1.0)
    wide = loc.localize(IMAGE, CAM, prior, r_gc, 2.0, attitude_sigma_rad=0.05)
    again = loc.localize(IMAGE, CAM, prior, r_gc, 3.0)
    assert plain.ok and wide.ok and again.ok
    err = np.array(
        [
            plain.east_m - TRUTH_EN_M[0],
            plain.north_m - TRUTH_EN_M[1],
            math.remainder(plain.yaw_enu_rad - TRUTH_YAW_RAD, math.tau),
        ]
    )
    assert float(np.hypot(err[0], err[1])) > 2.0  # about altitude x tilt = 4 m
    assert nees(err, plain.cov_en_yaw) > CHI2_3DOF_95  # confident and wrong without it
    assert nees(err, wide.cov_en_yaw) <= CHI2_3DOF_95  # covered with the frame's sigma
    diff = np.diag(wide.cov_en_yaw - plain.cov_en_yaw)
    assert (0.05 * ALTITUDE_M) ** 2 < diff[0] < (0.05 * 1.3 * ALTITUDE_M) ** 2
    np.testing.assert_allclose(again.cov_en_yaw, plain.cov_en_yaw)  # not sticky
    bad = loc.localize(IMAGE, CAM, prior, r_gc, 4.0, attitude_sigma_rad=-1.0)
    assert not bad.ok and "attitude_sigma_rad" in bad.reasons[0]
