"""Camera-to-base extrinsics: the base pose from the camera pose, with its covariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.errors import InvalidInputError
from cvgl_ros.core.extrinsics import (
    CameraExtrinsics,
    base_estimate_from_camera_estimate,
    base_pose_from_camera_pose,
    horizontal_lever_arm_m,
)
from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.mount import BODY_FROM_OPTICAL_NADIR, rot_x, rot_y
from cvgl_ros.core.types import PoseEstimate, PoseStatus

SETTINGS = settings(max_examples=60, deadline=None)
coord = st.floats(-500.0, 500.0)
arm = st.floats(-3.0, 3.0)
yaw = st.floats(-math.pi, math.pi)


def _rot2(angle_rad: float) -> np.ndarray:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, -s], [s, c]])


def _random_cov(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3, 3)) * np.array([2.0, 2.0, 0.05])[:, None]
    return a @ a.T + np.diag([0.01, 0.01, 1e-4])


@SETTINGS
@given(bx=coord, by=coord, yaw_rad=yaw, lx=arm, ly=arm, seed=st.integers(0, 1000))
def test_base_pose_is_recovered_and_yaw_is_kept(
    bx: float, by: float, yaw_rad: float, lx: float, ly: float, seed: int
) -> None:
    base = np.array([bx, by])
    lever = np.array([lx, ly])
    camera = base + _rot2(yaw_rad) @ lever  # the camera where the lever arm puts it
    cov = _random_cov(seed)
    got, cov_b = base_pose_from_camera_pose(camera, yaw_rad, cov, lever)
    np.testing.assert_allclose(got, base, atol=1e-9)
    assert cov_b[2, 2] == pytest.approx(cov[2, 2])
    np.testing.assert_allclose(cov_b, cov_b.T)
    assert np.min(np.linalg.eigvalsh(cov_b)) > 0.0


@SETTINGS
@given(yaw_rad=yaw, lx=arm, ly=arm, seed=st.integers(0, 1000))
def test_covariance_is_the_first_order_propagation(
    yaw_rad: float, lx: float, ly: float, seed: int
) -> None:
    cov = _random_cov(seed)
    lever = np.array([lx, ly])
    camera = np.array([12.0, -7.0])
    _, cov_b = base_pose_from_camera_pose(camera, yaw_rad, cov, lever)
    # The Jacobian by central differences of the map (east, north, yaw) -> (base, yaw).
    x0 = np.array([camera[0], camera[1], yaw_rad])

    def f(x: np.ndarray) -> np.ndarray:
        b, _ = base_pose_from_camera_pose(x[:2], float(x[2]), cov, lever)
        return np.array([b[0], b[1], x[2]])

    h = 1e-6
    jac = np.stack([(f(x0 + h * e) - f(x0 - h * e)) / (2 * h) for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(cov_b, jac @ cov @ jac.T, rtol=1e-6, atol=1e-9)
    # Only yaw uncertainty: it moves the base across the arm, sigma_yaw * |l| metres.
    sigma_yaw = 0.1
    _, only_yaw = base_pose_from_camera_pose(camera, yaw_rad, np.diag([0, 0, sigma_yaw**2]), lever)
    across = _rot2(yaw_rad) @ np.array([-ly, lx])  # the arm turned by +90 deg, in ENU
    np.testing.assert_allclose(only_yaw[:2, :2], sigma_yaw**2 * np.outer(across, across))


def test_zero_lever_arm_changes_nothing() -> None:
    cov = _random_cov(3)
    got, cov_b = base_pose_from_camera_pose([5.0, 6.0], 0.7, cov, [0.0, 0.0])
    np.testing.assert_array_equal(got, [5.0, 6.0])
    np.testing.assert_allclose(cov_b, cov)


def test_horizontal_lever_arm_follows_body_tilt() -> None:
    t = np.array([1.0, -0.5, 2.0])
    np.testing.assert_allclose(horizontal_lever_arm_m(t, np.eye(3)), [1.0, -0.5])
    # Pitched nose down by 10 deg (positive pitch about +y): a camera 2 m above the base moves
    # forward by 2 sin(10 deg), the forward offset shrinks by cos(10 deg).
    p = math.radians(10.0)
    got = horizontal_lever_arm_m(t, rot_y(p))
    np.testing.assert_allclose(got, [1.0 * math.cos(p) + 2.0 * math.sin(p), -0.5])
    r = math.radians(-5.0)
    got = horizontal_lever_arm_m(t, rot_x(r))
    np.testing.assert_allclose(got, [1.0, -0.5 * math.cos(r) - 2.0 * math.sin(r)])
    with pytest.raises(InvalidInputError):
        horizontal_lever_arm_m([1.0, 2.0], np.eye(3))
    with pytest.raises(InvalidInputError):
        horizontal_lever_arm_m(t, 2.0 * np.eye(3))


def test_extrinsics_validation_and_mount() -> None:
    ext = CameraExtrinsics.for_mount("nadir", camera_in_base_m=(0.2, 0.0, -0.1))
    np.testing.assert_array_equal(ext.body_from_camera, BODY_FROM_OPTICAL_NADIR)
    np.testing.assert_array_equal(ext.camera_in_base_m, [0.2, 0.0, -0.1])
    with pytest.raises(InvalidInputError):
        CameraExtrinsics(np.eye(3), np.array([0.0, math.nan, 0.0]))
    with pytest.raises(InvalidInputError):
        CameraExtrinsics(np.diag([1.0, 1.0, -1.0]), np.zeros(3))  # a reflection


def test_estimate_moves_to_the_base_with_lat_lon() -> None:
    origin = LocalEnu(47.3769, 8.5417)
    yaw_rad = 0.9
    lever = np.array([1.2, 0.4])
    lat, lon = origin.to_wgs84(30.0, -20.0)
    camera = PoseEstimate(
        status=PoseStatus.OK,
        lat_deg=float(lat),
        lon_deg=float(lon),
        east_m=30.0,
        north_m=-20.0,
        yaw_enu_rad=yaw_rad,
        cov_en_yaw=np.diag([0.25, 0.25, 0.01]),
        inliers=50,
    )
    base = base_estimate_from_camera_estimate(camera, lever, origin)
    expect = np.array([30.0, -20.0]) - _rot2(yaw_rad) @ lever
    assert (base.east_m, base.north_m) == pytest.approx(tuple(expect), abs=1e-9)
    e, n = origin.to_en(base.lat_deg, base.lon_deg)
    assert (float(e), float(n)) == pytest.approx(tuple(expect), abs=1e-6)
    assert base.yaw_enu_rad == yaw_rad and base.inliers == 50 and base.status is PoseStatus.OK
    # 0.1 rad of yaw noise over a 1.26 m arm: 0.126 m more across the arm.
    assert np.trace(base.cov_en_yaw[:2, :2]) == pytest.approx(0.5 + 0.01 * 1.6, rel=1e-9)
    assert base_estimate_from_camera_estimate(camera, [0.0, 0.0], origin) is camera
    failed = PoseEstimate(status=PoseStatus.NO_FIX)
    assert base_estimate_from_camera_estimate(failed, lever, None) is failed
    with pytest.raises(InvalidInputError):
        base_estimate_from_camera_estimate(camera, lever, None)
