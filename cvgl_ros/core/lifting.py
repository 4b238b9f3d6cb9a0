"""Lifting: ground-image pixels + depth -> planar points in the gravity-aligned body frame.

pixels (u, v) --camera model + depth--> points in the optical frame (z forward, x right, y down)
--``gravity_from_camera``--> gravity-aligned body frame (x forward, y left, z up) --drop z-->
planar points g_i = (x forward, y left), in depth units (metres for metric depth). Invalid depth
(NaN, <= 0), points farther from the camera than ``max_depth_m``, nearer than ``min_depth_m`` and
outside the height limits are dropped; the indices of the kept pixels are returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvgl_ros.core.camera import CameraModel, as_points
from cvgl_ros.core.config import LiftingConfig
from cvgl_ros.core.errors import InvalidInputError
from cvgl_ros.core.mount import check_rotation
from cvgl_ros.core.types import FloatArray, IntArray


@dataclass(frozen=True)
class LiftedPoints:
    """Result of :func:`lift_pixels`.

    Attributes:
        points_g: (M, 2) float64, depth units (metres for metric depth), planar points
            (x forward, y left) in the gravity-aligned body frame.
        heights_m: (M,) float64, z (up) of each point relative to the camera, depth units.
        index: (M,) int64, index of each kept point in the input pixel array.
    """

    points_g: FloatArray
    heights_m: FloatArray
    index: IntArray

    def __len__(self) -> int:
        return int(self.points_g.shape[0])


def lift_pixels(
    pixels_px: FloatArray,
    depth: FloatArray,
    camera: CameraModel,
    gravity_from_camera: FloatArray,
    config: LiftingConfig | None = None,
) -> LiftedPoints:
    """Back-project pixels with depth and flatten them into the gravity-aligned body frame.

    Args:
        pixels_px: (N, 2) float64, pixels (u, v) in the ground image; must be finite.
        depth: (N,) float64, z-depth (pinhole) or range (panorama), metres or relative units;
            NaN / inf / <= 0 mark unknown depth and drop the point.
        camera: camera model of the ground image.
        gravity_from_camera: (3, 3) rotation, optical frame -> gravity-aligned body frame.
        config: point filters; defaults to ``LiftingConfig()``.

    Returns:
        The kept planar points, their heights and indices (possibly empty).

    Raises:
        InvalidInputError: malformed pixels, depth length or rotation.
    """
    cfg = config if config is not None else LiftingConfig()
    p = as_points(pixels_px, 2, "pixels_px")
    d = np.asarray(depth, dtype=np.float64).reshape(-1)
    if d.shape[0] != p.shape[0]:
        raise InvalidInputError(f"depth has {d.shape[0]} values for {p.shape[0]} pixels")
    r = check_rotation(gravity_from_camera, "gravity_from_camera")
    valid = np.isfinite(d) & (d > 0.0)
    d_safe = np.where(valid, d, 1.0)
    points_c = camera.backproject(p, d_safe)
    points_b = points_c @ r.T
    distance = np.linalg.norm(points_b, axis=1)
    keep = valid & (distance <= cfg.max_depth_m) & (distance >= cfg.min_depth_m)
    if cfg.min_height_m is not None:
        keep &= points_b[:, 2] >= cfg.min_height_m
    if cfg.max_height_m is not None:
        keep &= points_b[:, 2] <= cfg.max_height_m
    index = np.flatnonzero(keep).astype(np.int64)
    return LiftedPoints(
        points_g=np.ascontiguousarray(points_b[index, :2]),
        heights_m=np.ascontiguousarray(points_b[index, 2]),
        index=index,
    )
