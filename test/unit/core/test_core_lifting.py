"""Mounts, depth providers and lifting: synthetic flat scenes against analytic positions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.camera import EquirectangularCamera, PinholeCamera
from cvgl_ros.core.config import LiftingConfig
from cvgl_ros.core.depth import ConstantRangeDepth, GroundPlaneDepth, sample_depth_map
from cvgl_ros.core.errors import InvalidInputError
from cvgl_ros.core.lifting import lift_pixels
from cvgl_ros.core.mount import (
    body_from_camera_for_mount,
    gravity_from_camera_for_mount,
    gravity_from_imu,
    rotation_from_rpy,
)

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
CAM = PinholeCamera(640, 480, 500.0, 500.0, 319.5, 239.5)
IMAGE = np.zeros((480, 640, 3), dtype=np.uint8)


def _quat_xyzw(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return np.array(
        [
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy,
        ]
    )


def test_mount_axes() -> None:
    fwd = gravity_from_camera_for_mount("forward")
    np.testing.assert_allclose(fwd @ [0, 0, 1], [1, 0, 0])  # optical axis = body forward
    np.testing.assert_allclose(fwd @ [1, 0, 0], [0, -1, 0])  # image right = body right
    np.testing.assert_allclose(fwd @ [0, 1, 0], [0, 0, -1])  # image down = body down
    nadir = gravity_from_camera_for_mount("nadir")
    np.testing.assert_allclose(nadir @ [0, 0, 1], [0, 0, -1])  # looks down
    np.testing.assert_allclose(nadir @ [0, -1, 0], [1, 0, 0])  # image top = body forward
    np.testing.assert_allclose(nadir @ [1, 0, 0], [0, -1, 0])  # image right = body right
    for r in (fwd, nadir):
        assert np.linalg.det(r) == pytest.approx(1.0)
    pitched = gravity_from_camera_for_mount("forward", pitch_rad=0.2)
    axis = pitched @ [0, 0, 1]
    assert axis[2] == pytest.approx(-math.sin(0.2))  # positive pitch looks down
    with pytest.raises(InvalidInputError):
        gravity_from_camera_for_mount("sideways")  # type: ignore[arg-type]


def test_gravity_from_imu_uses_roll_pitch_only() -> None:
    body_from_cam = body_from_camera_for_mount("forward", pitch_rad=0.1)
    q = _quat_xyzw(0.05, -0.08, 2.5)
    expected = rotation_from_rpy(0.05, -0.08, 0.0) @ body_from_cam
    np.testing.assert_allclose(gravity_from_imu(q, body_from_cam), expected, atol=1e-12)
    q_other_yaw = _quat_xyzw(0.05, -0.08, -1.0)
    np.testing.assert_allclose(gravity_from_imu(q_other_yaw, body_from_cam), expected, atol=1e-12)
    with pytest.raises(InvalidInputError):
        gravity_from_imu([0, 0, 0, 0], body_from_cam)
    with pytest.raises(InvalidInputError):
        gravity_from_imu(q, np.diag([1.0, 1.0, -1.0]))


@SETTINGS
@given(pitch_deg=st.floats(3.0, 40.0), height_m=st.floats(0.5, 3.0))
def test_forward_camera_over_ground_plane_matches_analytic(
    pitch_deg: float, height_m: float
) -> None:
    pitch = math.radians(pitch_deg)
    r = gravity_from_camera_for_mount("forward", pitch_rad=pitch)
    # Pixels down the centre column: depression = pitch + atan((v - cy) / fy).
    v = np.linspace(150.0, 479.0, 12)
    px = np.stack([np.full_like(v, CAM.cx_px), v], axis=1)
    depth = GroundPlaneDepth(height_m).depth_at(IMAGE, CAM, px, r)
    lifted = lift_pixels(px, depth, CAM, r, LiftingConfig(max_depth_m=1e4))
    depression = pitch + np.arctan((v - CAM.cy_px) / CAM.fy_px)
    below = depression > math.radians(0.5)
    np.testing.assert_array_equal(lifted.index, np.flatnonzero(below))
    expected_x = height_m / np.tan(depression[below])
    np.testing.assert_allclose(lifted.points_g[:, 0], expected_x, rtol=1e-9)
    np.testing.assert_allclose(lifted.points_g[:, 1], 0.0, atol=1e-9)
    np.testing.assert_allclose(lifted.heights_m, -height_m, atol=1e-9)


@SETTINGS
@given(
    x=st.floats(2.0, 40.0),
    y=st.floats(-10.0, 10.0),
    pitch_deg=st.floats(5.0, 30.0),
    roll_deg=st.floats(-5.0, 5.0),
)
def test_ground_points_round_trip_through_the_image(
    x: float, y: float, pitch_deg: float, roll_deg: float
) -> None:
    r = gravity_from_camera_for_mount("forward", math.radians(roll_deg), math.radians(pitch_deg))
    ground = np.array([[x, y, -1.6]])
    px = CAM.project(ground @ r)  # optical = R^T * body
    if not (0 <= px[0, 0] < 640 and 0 <= px[0, 1] < 480):
        return
    depth = GroundPlaneDepth(1.6).depth_at(IMAGE, CAM, px, r)
    lifted = lift_pixels(px, depth, CAM, r, LiftingConfig(max_depth_m=1e4))
    np.testing.assert_allclose(lifted.points_g, [[x, y]], rtol=1e-7, atol=1e-7)


def test_nadir_camera_constant_range() -> None:
    altitude = 80.0
    r = gravity_from_camera_for_mount("nadir")
    px = np.array([[319.5, 239.5], [319.5, 0.0], [639.0, 239.5], [0.0, 479.0]])
    depth = ConstantRangeDepth(altitude).depth_at(IMAGE, CAM, px, r)
    lifted = lift_pixels(px, depth, CAM, r)
    # image up = forward (+x), image right = right (-y); scale = altitude / f.
    expected = np.stack(
        [-(px[:, 1] - 239.5) * altitude / 500.0, -(px[:, 0] - 319.5) * altitude / 500.0], axis=1
    )
    np.testing.assert_allclose(lifted.points_g, expected, atol=1e-9)
    np.testing.assert_allclose(lifted.heights_m, -altitude)
    # The same scene via the ground plane at the same altitude is identical.
    depth_gp = GroundPlaneDepth(altitude).depth_at(IMAGE, CAM, px, r)
    np.testing.assert_allclose(depth_gp, depth)


def test_panorama_lifting_uses_range() -> None:
    cam = EquirectangularCamera(720, 360)
    r = gravity_from_camera_for_mount("forward")
    ground = np.array([[10.0, 0.0, -2.0], [0.0, 10.0, -2.0], [-7.0, -7.0, -2.0]])
    px = cam.project(ground @ r)
    depth = GroundPlaneDepth(2.0).depth_at(IMAGE, cam, px, r)
    np.testing.assert_allclose(depth, np.linalg.norm(ground, axis=1), rtol=1e-9)
    lifted = lift_pixels(px, depth, cam, r, LiftingConfig(max_depth_m=1e3))
    np.testing.assert_allclose(lifted.points_g, ground[:, :2], atol=1e-6)


def test_filters_drop_points() -> None:
    r = gravity_from_camera_for_mount("forward")
    px = np.array([[319.5, 239.5], [319.5, 300.0], [319.5, 400.0], [100.0, 100.0]])
    depth = np.array([np.nan, 300.0, 5.0, -1.0])
    lifted = lift_pixels(px, depth, CAM, r, LiftingConfig(max_depth_m=100.0))
    np.testing.assert_array_equal(lifted.index, [2])  # NaN, too far, negative dropped
    lifted = lift_pixels(
        px[2:3], depth[2:3], CAM, r, LiftingConfig(min_height_m=-0.5, max_height_m=5.0)
    )
    assert len(lifted) == 0  # 5 m ahead, 160 px below centre: 1.6 m below -> under min
    # Above the horizon the ground plane gives NaN.
    sky = GroundPlaneDepth(1.5).depth_at(IMAGE, CAM, np.array([[319.5, 100.0]]), r)
    assert np.isnan(sky[0])


def test_lifting_input_errors() -> None:
    r = np.eye(3)
    with pytest.raises(InvalidInputError):
        lift_pixels(np.empty((0, 2)), np.empty(0), CAM, r)
    with pytest.raises(InvalidInputError):
        lift_pixels(np.array([[np.nan, 1.0]]), np.ones(1), CAM, r)
    with pytest.raises(InvalidInputError):
        lift_pixels(np.array([[1.0, 1.0]]), np.ones(2), CAM, r)
    with pytest.raises(InvalidInputError):
        lift_pixels(np.array([[1.0, 1.0]]), np.ones(1), CAM, np.full((3, 3), np.inf))
    with pytest.raises(InvalidInputError):
        lift_pixels(np.array([[1.0, 1.0]]), np.ones(1), CAM, 2.0 * np.eye(3))


def test_depth_provider_validation() -> None:
    with pytest.raises(ValueError, match="camera_height_m"):
        GroundPlaneDepth(0.0)
    with pytest.raises(ValueError, match="range_m"):
        ConstantRangeDepth(math.nan)


def test_sample_depth_map_bilinear() -> None:
    dm = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = sample_depth_map(dm, np.array([[0.5, 0.5], [0.0, 1.0], [1.5, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(out[:2], [2.5, 3.0])
    assert np.isnan(out[2])  # outside
    assert out[3] == pytest.approx(4.0)
    dm[0, 0] = np.nan
    assert np.isnan(sample_depth_map(dm, np.array([[0.5, 0.5]]))[0])
