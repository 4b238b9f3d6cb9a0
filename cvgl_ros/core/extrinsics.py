"""Camera-to-base extrinsics: from the camera's pose to the pose of ``base_link``.

The localizer solves for the camera: its lifted points are rays from the camera's optical
centre, so the translation it finds is where the *camera* is, horizontally, and its yaw is the
heading of the gravity-aligned body frame (the mount rotation is in ``gravity_from_camera``).
A robot's state estimator wants ``base_link``: the camera sits at ``camera_in_base_m`` (FLU,
metres) on the body, and its horizontal offset turns with the body yaw, so

    base_en = camera_en - R(yaw) l,    l = (gravity_from_body @ camera_in_base_m)[:2]

with ``l`` the lever arm in the gravity-aligned body frame (x forward, y left; body roll and
pitch tilt it, its vertical part is dropped). The yaw is the same for both. Propagating the
(east, north, yaw) covariance ``C`` through this map, ``J C J^T`` with
``J = [[1, 0, -dR/dyaw l], [0, 1, .], [0, 0, 1]]``, adds the yaw uncertainty swept through the
lever arm (``sigma_yaw * |l|`` metres, across the arm) and the matching correlations.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.core.errors import InvalidInputError
from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.mount import MountKind, body_from_camera_for_mount, check_rotation
from cvgl_ros.core.types import FloatArray, PoseEstimate


@dataclass(frozen=True)
class CameraExtrinsics:
    """Where the camera sits on the robot: the transform ``base_link <- camera optical frame``.

    Attributes:
        body_from_camera: (3, 3) float64 rotation, camera optical frame -> base_link (FLU).
        camera_in_base_m: (3,) float64, metres, the camera's optical centre in base_link (FLU:
            x forward, y left, z up).
    """

    body_from_camera: FloatArray
    camera_in_base_m: FloatArray

    def __post_init__(self) -> None:
        rot = check_rotation(self.body_from_camera, "body_from_camera")
        t = np.asarray(self.camera_in_base_m, dtype=np.float64).reshape(-1)
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise InvalidInputError(f"camera_in_base_m must be 3 finite values, got {t!r}")
        object.__setattr__(self, "body_from_camera", rot)
        object.__setattr__(self, "camera_in_base_m", t)

    @classmethod
    def for_mount(
        cls,
        mount: MountKind,
        roll_rad: float = 0.0,
        pitch_rad: float = 0.0,
        yaw_rad: float = 0.0,
        camera_in_base_m: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> CameraExtrinsics:
        """A ``forward`` / ``nadir`` mount rotated by roll/pitch/yaw (see :mod:`.mount`),
        with the camera at ``camera_in_base_m`` (FLU, metres)."""
        return cls(
            body_from_camera_for_mount(mount, roll_rad, pitch_rad, yaw_rad),
            np.asarray(camera_in_base_m, dtype=np.float64),
        )


def horizontal_lever_arm_m(camera_in_base_m: object, gravity_from_body: object) -> FloatArray:
    """The camera's horizontal offset from the base origin in the gravity-aligned body frame.

    Args:
        camera_in_base_m: (3,) metres, camera optical centre in base_link (FLU).
        gravity_from_body: (3, 3) rotation base_link -> gravity-aligned body frame (the body's
            roll and pitch; identity for a level body).

    Returns:
        (2,) float64, metres, (x forward, y left) in the gravity-aligned body frame.

    Raises:
        InvalidInputError: wrong shapes, non-finite values or not a rotation.
    """
    t = np.asarray(camera_in_base_m, dtype=np.float64).reshape(-1)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise InvalidInputError(f"camera_in_base_m must be 3 finite values, got {t!r}")
    rot = check_rotation(gravity_from_body, "gravity_from_body")
    out: FloatArray = (rot @ t)[:2]
    return out


def base_pose_from_camera_pose(
    camera_en_m: object, yaw_enu_rad: float, cov_en_yaw: object, lever_arm_g_m: object
) -> tuple[FloatArray, FloatArray]:
    """Move a planar pose from the camera to the base origin.

    Args:
        camera_en_m: (2,) metres, camera (east, north) in the map ENU frame.
        yaw_enu_rad: ENU yaw of the body (gravity-aligned x axis), radians.
        cov_en_yaw: (3, 3) covariance of (east m, north m, yaw rad) of the camera pose.
        lever_arm_g_m: (2,) metres, camera offset from the base origin in the gravity-aligned
            body frame (:func:`horizontal_lever_arm_m`).

    Returns:
        (base (east, north) (2,) float64 metres, (3, 3) float64 covariance ``J C J^T``); the
        yaw and its variance are unchanged.

    Raises:
        InvalidInputError: wrong shapes or a non-finite pose or lever arm.
    """
    cam = np.asarray(camera_en_m, dtype=np.float64).reshape(-1)
    arm = np.asarray(lever_arm_g_m, dtype=np.float64).reshape(-1)
    cov = np.asarray(cov_en_yaw, dtype=np.float64)
    if cam.shape != (2,) or arm.shape != (2,) or cov.shape != (3, 3):
        raise InvalidInputError(
            f"expected camera_en_m (2,), lever_arm_g_m (2,), cov_en_yaw (3, 3); got "
            f"{cam.shape}, {arm.shape}, {cov.shape}"
        )
    if not (np.all(np.isfinite(cam)) and np.all(np.isfinite(arm)) and math.isfinite(yaw_enu_rad)):
        raise InvalidInputError("camera pose and lever arm must be finite")
    c, s = math.cos(yaw_enu_rad), math.sin(yaw_enu_rad)
    rot = np.array([[c, -s], [s, c]])
    d_rot = np.array([[-s, -c], [c, -s]])  # d rot / d yaw
    base = cam - rot @ arm
    jac = np.eye(3)
    jac[:2, 2] = -(d_rot @ arm)
    cov_base = jac @ cov @ jac.T
    return base, np.asarray(0.5 * (cov_base + cov_base.T), dtype=np.float64)


def base_estimate_from_camera_estimate(
    estimate: PoseEstimate, lever_arm_g_m: object, map_origin: LocalEnu | None
) -> PoseEstimate:
    """:func:`base_pose_from_camera_pose` applied to a :class:`PoseEstimate`.

    East/north, the covariance and latitude/longitude (through ``map_origin``) become the base
    origin's; everything else is kept. An estimate without a finite pose (a failure with no
    hypothesis) and a zero lever arm return ``estimate`` itself.

    Args:
        estimate: the localizer's (camera) estimate.
        lever_arm_g_m: (2,) metres, see :func:`horizontal_lever_arm_m`.
        map_origin: origin of the map ENU frame the estimate is in (for lat/lon); None keeps
            the camera's lat/lon only when the pose is not finite.

    Raises:
        InvalidInputError: a malformed lever arm, or a finite pose without ``map_origin``.
    """
    arm = np.asarray(lever_arm_g_m, dtype=np.float64).reshape(-1)
    if arm.shape != (2,) or not np.all(np.isfinite(arm)):
        raise InvalidInputError(f"lever_arm_g_m must be 2 finite values, got {arm!r}")
    pose = (estimate.east_m, estimate.north_m, estimate.yaw_enu_rad)
    if not all(math.isfinite(v) for v in pose) or not np.any(arm):
        return estimate
    if map_origin is None:
        raise InvalidInputError("map_origin is needed to move a finite pose to the base")
    base, cov = base_pose_from_camera_pose(
        (estimate.east_m, estimate.north_m), estimate.yaw_enu_rad, estimate.cov_en_yaw, arm
    )
    lat, lon = map_origin.to_wgs84(base[0], base[1])
    return dataclasses.replace(
        estimate,
        east_m=float(base[0]),
        north_m=float(base[1]),
        lat_deg=float(lat),
        lon_deg=float(lon),
        cov_en_yaw=cov,
    )
