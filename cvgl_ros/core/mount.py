"""Camera mounts: the rotation from the camera optical frame to the gravity-aligned body frame.

Frames (REP-103): body = FLU (x forward, y left, z up); camera optical = z forward, x right,
y down. The *gravity-aligned body frame* is the body frame with roll and pitch removed: its z axis
is up, its x axis is the horizontal projection of body forward. Yaw (heading) is what the pose
solver estimates, so it never enters these rotations except as the mount's own yaw offset.

Mount conventions:

- ``forward``: the optical axis (optical +z) is body +x, image right is body -y, image down is
  body -z.
- ``nadir``: the optical axis points down (body -z) and the image **top** points to body +x, so
  the yaw a nadir camera reports is the ENU heading of the image's up direction.

The mount's own orientation in the body frame is given as roll/pitch/yaw (radians, REP-103
intrinsic Z-Y-X: ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``) applied on top of the base mount. A
positive pitch of a forward camera tilts it **down** (rotation about body +y, left).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from cvgl_ros.core.attitude import roll_pitch_from_quaternion
from cvgl_ros.core.errors import InvalidInputError
from cvgl_ros.core.types import FloatArray

MountKind = Literal["forward", "nadir"]

# Columns are the optical axes (x right, y down, z forward) expressed in the body frame (FLU).
BODY_FROM_OPTICAL_FORWARD: FloatArray = np.array(
    [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], dtype=np.float64
)
BODY_FROM_OPTICAL_NADIR: FloatArray = np.array(
    [[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]], dtype=np.float64
)


def rot_x(angle_rad: float) -> FloatArray:
    """(3, 3) rotation about +x by ``angle_rad`` (right-handed)."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle_rad: float) -> FloatArray:
    """(3, 3) rotation about +y by ``angle_rad`` (right-handed)."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle_rad: float) -> FloatArray:
    """(3, 3) rotation about +z by ``angle_rad`` (right-handed)."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_from_rpy(roll_rad: float, pitch_rad: float, yaw_rad: float) -> FloatArray:
    """(3, 3) float64 ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (REP-103 fixed-axis roll, pitch, yaw)."""
    for name, v in (("roll_rad", roll_rad), ("pitch_rad", pitch_rad), ("yaw_rad", yaw_rad)):
        if not math.isfinite(v):
            raise InvalidInputError(f"{name} must be finite, got {v}")
    return rot_z(yaw_rad) @ rot_y(pitch_rad) @ rot_x(roll_rad)


def check_rotation(matrix: object, name: str = "rotation", tol: float = 1e-6) -> FloatArray:
    """Validate a (3, 3) proper rotation matrix.

    Raises:
        InvalidInputError: wrong shape, non-finite, not orthonormal or a reflection.
    """
    r = np.asarray(matrix, dtype=np.float64)
    if r.shape != (3, 3):
        raise InvalidInputError(f"{name} must be a (3, 3) matrix, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise InvalidInputError(f"{name} contains NaN or inf")
    if not np.allclose(r @ r.T, np.eye(3), atol=tol) or np.linalg.det(r) < 0.0:
        raise InvalidInputError(f"{name} is not a proper rotation matrix")
    return r


def gravity_from_camera_for_mount(
    mount: MountKind,
    roll_rad: float = 0.0,
    pitch_rad: float = 0.0,
    yaw_rad: float = 0.0,
) -> FloatArray:
    """Rotation camera optical frame -> gravity-aligned body frame for a static mount.

    Assumes the body itself is level (roll = pitch = 0); use :func:`gravity_from_imu` when an
    IMU gives the body's attitude.

    Args:
        mount: ``"forward"`` or ``"nadir"`` (see the module docstring).
        roll_rad: camera roll about body x, radians.
        pitch_rad: camera pitch about body y, radians (positive tilts a forward camera down).
        yaw_rad: camera yaw about body z, radians (positive turns it to the left).

    Returns:
        (3, 3) float64 rotation ``gravity_from_camera`` (optical -> FLU, level).

    Raises:
        InvalidInputError: unknown mount or non-finite angle.
    """
    return rotation_from_rpy(roll_rad, pitch_rad, yaw_rad) @ base_body_from_optical(mount)


def base_body_from_optical(mount: MountKind) -> FloatArray:
    """(3, 3) float64 body-from-optical rotation of the base ``forward`` / ``nadir`` mount."""
    if mount == "forward":
        return BODY_FROM_OPTICAL_FORWARD.copy()
    if mount == "nadir":
        return BODY_FROM_OPTICAL_NADIR.copy()
    raise InvalidInputError(f"mount must be 'forward' or 'nadir', got {mount!r}")


def body_from_camera_for_mount(
    mount: MountKind, roll_rad: float = 0.0, pitch_rad: float = 0.0, yaw_rad: float = 0.0
) -> FloatArray:
    """(3, 3) float64 ``body_from_camera`` (optical -> FLU body) of a mount on the body."""
    return gravity_from_camera_for_mount(mount, roll_rad, pitch_rad, yaw_rad)


def gravity_from_imu(orientation_xyzw: object, body_from_camera: object) -> FloatArray:
    """``gravity_from_camera`` from an IMU attitude, using only its roll and pitch.

    Args:
        orientation_xyzw: (4,) quaternion (x, y, z, w) of ``world_from_body`` (e.g.
            ``sensor_msgs/Imu.orientation`` with the IMU frame = body frame). The yaw is
            ignored: magnetometer yaw is unreliable and the solver estimates yaw.
        body_from_camera: (3, 3) rotation optical -> body (e.g.
            :func:`body_from_camera_for_mount` or the TF of the camera).

    Returns:
        (3, 3) float64 rotation optical -> gravity-aligned body frame.

    Raises:
        InvalidInputError: malformed quaternion or rotation.
    """
    b = check_rotation(body_from_camera, "body_from_camera")
    roll, pitch = roll_pitch_from_quaternion(orientation_xyzw)
    return rot_y(pitch) @ rot_x(roll) @ b
