"""Covariance floors: errors shared by every inlier (keypoint bias, map georeferencing) that
the residuals cannot show and that must not average down with the inlier count."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.camera import PinholeCamera
from cvgl_ros.core.config import CovarianceConfig, LocalizerConfig
from cvgl_ros.core.covariance import CHI2_3DOF_95, nees, pose_covariance
from cvgl_ros.core.depth import ConstantRangeDepth
from cvgl_ros.core.errors import InvalidInputError
from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.localizer import Localizer, solve_patch_pose
from cvgl_ros.core.mount import gravity_from_camera_for_mount
from cvgl_ros.core.procrustes import Similarity2D
from cvgl_ros.core.synthetic import make_problem
from cvgl_ros.core.types import AerialPatch, Correspondences, GnssPrior, UInt8Array

NO_FLOORS = CovarianceConfig(
    min_sigma_m=0.0,
    aerial_sigma_px=0.0,
    map_georef_sigma_m=0.0,
    min_position_sigma_m=0.0,
    min_yaw_sigma_rad=0.0,
)


def _centred_fit(n: int, seed: int, noise_m: float = 0.3) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    src = rng.uniform(-30.0, 30.0, (n, 2))
    src -= src.mean(axis=0)
    model = Similarity2D(1.2, -0.4, np.array([3.0, -7.0]))
    dst = model.apply(src) + rng.normal(0.0, noise_m, (n, 2))
    return src, dst, model  # type: ignore[return-value]


def test_keypoint_floor_closed_form_for_centred_points() -> None:
    # Camera-centred (nadir) points: the keypoint floor is exactly (px * m_per_px)^2 on east
    # and north and that over the mean squared radius on yaw; georeferencing adds to east and
    # north only, the yaw floor to yaw only.
    src, dst, model = _centred_fit(400, 0)
    cfg = CovarianceConfig(
        base_inflation=1.0, count_inflation=0.0, ratio_inflation=0.0, min_sigma_m=0.0,
        aerial_sigma_px=0.2, map_georef_sigma_m=0.7, min_position_sigma_m=0.0,
        min_yaw_sigma_rad=0.003,
    )  # fmt: skip
    c = pose_covariance(src, dst, model, config=cfg, aerial_m_per_px=0.5)
    assert c.floor_cov_en_yaw is not None
    sig_f = 0.2 * 0.5
    np.testing.assert_allclose(np.diag(c.floor_cov_en_yaw)[:2], sig_f**2 + 0.7**2, rtol=1e-9)
    yaw_floor = sig_f**2 / (1.2**2 * float(np.mean(np.sum(src**2, axis=1))))
    assert c.floor_cov_en_yaw[2, 2] == pytest.approx(yaw_floor + 0.003**2, rel=1e-9)
    np.testing.assert_allclose(c.cov_en_yaw, c.raw_cov_en_yaw + c.floor_cov_en_yaw, atol=1e-15)


def test_floor_does_not_shrink_with_the_inlier_count() -> None:
    cfg = CovarianceConfig(map_georef_sigma_m=0.0, min_position_sigma_m=0.0)
    few = pose_covariance(*_centred_fit(50, 1), config=cfg, aerial_m_per_px=0.5)
    many = pose_covariance(*_centred_fit(5000, 1), config=cfg, aerial_m_per_px=0.5)
    assert many.raw_cov_en_yaw[0, 0] < 0.02 * few.raw_cov_en_yaw[0, 0]
    assert many.floor_cov_en_yaw is not None and few.floor_cov_en_yaw is not None
    assert many.floor_cov_en_yaw[0, 0] == pytest.approx(few.floor_cov_en_yaw[0, 0], rel=1e-9)
    assert math.sqrt(many.cov_en_yaw[0, 0]) >= cfg.aerial_sigma_px * 0.5


def test_weighted_fit_keeps_the_position_floor() -> None:
    # With match-probability weights the effective count n_eff = (sum w)^2 / sum w^2 keeps the
    # position floor at (px * m_per_px)^2 for points centred on the weighted mean.
    rng = np.random.default_rng(3)
    w = rng.uniform(0.05, 1.0, 300)
    src = rng.uniform(-20.0, 20.0, (300, 2))
    src -= (w[:, None] * src).sum(axis=0) / w.sum()
    model = Similarity2D(1.0, 0.2, np.zeros(2))
    dst = model.apply(src) + rng.normal(0.0, 0.2, (300, 2))
    cfg = CovarianceConfig(aerial_sigma_px=0.3, map_georef_sigma_m=0.0, min_position_sigma_m=0.0)
    c = pose_covariance(src, dst, model, w, config=cfg, aerial_m_per_px=2.0)
    assert c.floor_cov_en_yaw is not None
    np.testing.assert_allclose(np.diag(c.floor_cov_en_yaw)[:2], 0.6**2, rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(20, 600),
    layout=st.sampled_from(["forward", "nadir"]),
    seed=st.integers(0, 10_000),
    bias_px=st.tuples(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0)),
    m_per_px=st.floats(0.05, 2.0),
)
def test_shared_keypoint_bias_is_covered_by_the_floor(
    n: int, layout: str, seed: int, bias_px: tuple[float, float], m_per_px: float
) -> None:
    """A bias shared by every aerial keypoint shifts the pose by that bias; its position NEES
    is at most (|bias| / (aerial_sigma_px * m_per_px))^2, whatever the geometry and count."""
    rng = np.random.default_rng(seed)
    p = make_problem(rng, n, 0.0, 0.01, layout=layout)  # type: ignore[arg-type]
    bias_m = np.array(bias_px) * m_per_px
    cfg = CovarianceConfig(aerial_sigma_px=0.25, map_georef_sigma_m=0.0)
    c = pose_covariance(
        p.source, p.target, p.truth, config=cfg, aerial_m_per_px=m_per_px
    ).cov_en_yaw
    pos = c[:2, :2]
    bound = float(bias_m @ bias_m) / (cfg.aerial_sigma_px * m_per_px) ** 2
    assert float(bias_m @ np.linalg.solve(pos, bias_m)) <= bound * (1 + 1e-9) + 1e-12


def test_common_mode_bias_is_overconfident_without_the_floor() -> None:
    # The failure this floor exists for: 600 inliers shifted by a quarter pixel (0.125 m at
    # 0.5 m/px) give a tiny residual-based covariance and a huge NEES; the floor makes it honest.
    rng = np.random.default_rng(5)
    p = make_problem(rng, 600, 0.0, 0.05, layout="nadir", extent_m=80.0)
    bias = np.array([0.125, -0.125])
    target = p.target + bias
    err = np.array([*bias, 0.0])
    without = pose_covariance(p.source, target, p.truth, config=NO_FLOORS)
    cfg = CovarianceConfig(aerial_sigma_px=0.3, map_georef_sigma_m=0.0)
    with_floor = pose_covariance(p.source, target, p.truth, config=cfg, aerial_m_per_px=0.5)
    assert nees(err, without.cov_en_yaw) > 100.0
    assert nees(err, with_floor.cov_en_yaw) < CHI2_3DOF_95


def test_no_resolution_no_keypoint_floor_and_bad_resolution_raises() -> None:
    src, dst, model = _centred_fit(100, 2)
    cfg = CovarianceConfig(map_georef_sigma_m=0.0, min_position_sigma_m=0.0)
    c = pose_covariance(src, dst, model, config=cfg)
    assert c.floor_cov_en_yaw is not None
    assert c.floor_cov_en_yaw[0, 0] == 0.0
    assert c.floor_cov_en_yaw[2, 2] == pytest.approx(cfg.min_yaw_sigma_rad**2)
    # Without a map resolution the points are not map measurements: no georeferencing term.
    d = pose_covariance(src, dst, model, config=CovarianceConfig(min_position_sigma_m=0.0))
    assert d.floor_cov_en_yaw is not None and d.floor_cov_en_yaw[0, 0] == 0.0
    for bad in (0.0, -0.5, math.nan, math.inf):
        with pytest.raises(InvalidInputError, match="aerial_m_per_px"):
            pose_covariance(src, dst, model, config=cfg, aerial_m_per_px=bad)


def test_default_config_is_honest_for_real_maps() -> None:
    cfg = CovarianceConfig()
    # A real orthophoto is good to about a metre: never claim better by default.
    assert cfg.map_georef_sigma_m >= 0.5
    assert cfg.aerial_sigma_px > 0.0 and cfg.min_yaw_sigma_rad > 0.0
    src, dst, model = _centred_fit(2000, 4, noise_m=0.05)
    c = pose_covariance(src, dst, model, config=cfg, aerial_m_per_px=0.5)
    assert math.sqrt(c.cov_en_yaw[0, 0]) >= cfg.map_georef_sigma_m


@pytest.mark.parametrize(
    "field_name", ["aerial_sigma_px", "map_georef_sigma_m", "min_yaw_sigma_rad"]
)
@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf])
def test_floor_fields_are_validated(field_name: str, value: float) -> None:
    with pytest.raises(ValueError, match=field_name):
        CovarianceConfig(**{field_name: value})


def test_config_round_trip_with_floors() -> None:
    cfg = LocalizerConfig.from_dict(
        {"covariance": {"aerial_sigma_px": 0.25, "map_georef_sigma_m": 1.5}}
    )
    assert cfg.covariance.aerial_sigma_px == 0.25
    assert LocalizerConfig.from_dict(cfg.to_dict()) == cfg


def test_solve_patch_pose_passes_the_resolution() -> None:
    rng = np.random.default_rng(6)
    p = make_problem(rng, 200, 0.2, 0.05, layout="nadir")
    cfg = LocalizerConfig(covariance=CovarianceConfig(map_georef_sigma_m=0.0))
    args = (p.source, p.target, p.weights, cfg, np.zeros(2), np.eye(2) * 400)
    coarse = solve_patch_pose(*args, aerial_m_per_px=2.0).covariance.cov_en_yaw
    none = solve_patch_pose(*args).covariance.cov_en_yaw
    assert coarse[0, 0] >= (0.1 * 2.0) ** 2
    assert coarse[0, 0] > none[0, 0] + 0.03


# ---------------------------------------------------------------- Localizer wiring (doubles)

WORLD = LocalEnu(52.0, 5.0)
CAM = PinholeCamera(640, 480, 400.0, 400.0, 319.5, 239.5)
IMAGE = np.zeros((480, 640, 3), dtype=np.uint8)


class _Patches:
    def __init__(self, m_per_px: float) -> None:
        self.m_per_px = m_per_px

    def patch_at(self, lat_deg: float, lon_deg: float) -> AerialPatch:
        return AerialPatch(
            image=np.zeros((512, 512, 3), dtype=np.uint8),
            m_per_px=self.m_per_px,
            center_lat_deg=lat_deg,
            center_lon_deg=lon_deg,
            valid_mask=np.ones((512, 512), dtype=bool),
            source_id="grid",
        )


class _NadirMatcher:
    """Exact correspondences of a nadir camera at ``camera_en_m`` (world frame), yaw 0."""

    def __init__(self, camera_en_m: np.ndarray, altitude_m: float) -> None:
        rng = np.random.default_rng(7)
        self.px = np.stack([rng.uniform(0, 639, 300), rng.uniform(0, 479, 300)], axis=1)
        planar = np.stack(
            [-(self.px[:, 1] - CAM.cy_px) / CAM.fy_px, -(self.px[:, 0] - CAM.cx_px) / CAM.fx_px],
            axis=1,
        )
        self.world_en = planar * altitude_m + camera_en_m
        self.noise = rng.normal(0.0, 0.02, planar.shape)

    def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
        ce, cn = WORLD.to_en(patch.center_lat_deg, patch.center_lon_deg)
        en = self.world_en - np.array([float(ce), float(cn)]) + self.noise
        return Correspondences(self.px.copy(), patch.en_to_pixel(en), np.ones(len(en)))


@pytest.mark.parametrize("m_per_px", [0.25, 1.0])
def test_localizer_applies_the_patch_resolution(m_per_px: float) -> None:
    truth = np.array([30.0, -20.0])
    cfg = LocalizerConfig(
        covariance=CovarianceConfig(
            aerial_sigma_px=0.2, map_georef_sigma_m=0.0, attitude_sigma_rad=0.0
        )
    )
    loc = Localizer(cfg, _NadirMatcher(truth, 60.0), ConstantRangeDepth(1.0), _Patches(m_per_px))
    lat, lon = WORLD.to_wgs84(truth[0] + 2.0, truth[1] - 1.0)
    prior = GnssPrior(float(lat), float(lon), np.eye(2) * 25.0, stamp_s=1.0)
    est = loc.localize(IMAGE, CAM, prior, gravity_from_camera_for_mount("nadir"), 1.0)
    assert est.ok, est.reasons
    sigma_e = math.sqrt(est.cov_en_yaw[0, 0])
    floor = 0.2 * m_per_px
    assert floor <= sigma_e <= 1.5 * floor + 0.02
