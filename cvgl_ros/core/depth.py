"""Geometric depth providers (no model needed) and dense depth-map sampling.

- :class:`GroundPlaneDepth`: depth where each pixel's ray meets a flat ground plane
  ``camera_height_m`` below the camera (for vehicles without a depth model). Rays at or above
  the horizon get NaN.
- :class:`ConstantRangeDepth`: the same depth for every pixel (nadir cameras; the Procrustes
  scale absorbs an unknown altitude).
- :func:`sample_depth_map`: bilinear lookup in a dense (H, W) depth map from a model.

All implement :class:`~cvgl_ros.core.interfaces.DepthProvider`; the returned value follows the
camera's depth convention (``camera.depth_kind``: z-depth for pinhole, range for panoramas).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.core.camera import CameraModel, as_points
from cvgl_ros.core.errors import InvalidInputError
from cvgl_ros.core.mount import check_rotation
from cvgl_ros.core.types import FloatArray, UInt8Array


@dataclass(frozen=True)
class GroundPlaneDepth:
    """Depth from a flat ground plane below the camera.

    Attributes:
        camera_height_m: height of the camera's optical centre above the ground, metres.
        min_depression_rad: rays less than this far below the horizon get NaN (their ground
            intersection is too far and too sensitive to pitch errors to be useful).
        metric_scale_sigma: relative 1-sigma error of the metric scale this depth implies
            (camera height error, road slope and camber against the flat plane); the
            localizer bounds the similarity scale to ``[1 / (1 + 3 sigma), 1 + 3 sigma]``.
    """

    camera_height_m: float
    min_depression_rad: float = math.radians(0.5)
    metric_scale_sigma: float = 0.1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.camera_height_m) and self.camera_height_m > 0.0):
            raise ValueError(
                f"GroundPlaneDepth.camera_height_m must be > 0, got {self.camera_height_m}"
            )
        if not (math.isfinite(self.min_depression_rad) and self.min_depression_rad >= 0.0):
            raise ValueError("GroundPlaneDepth.min_depression_rad must be >= 0")
        if not (math.isfinite(self.metric_scale_sigma) and self.metric_scale_sigma > 0.0):
            raise ValueError("GroundPlaneDepth.metric_scale_sigma must be > 0")

    def depth_at(
        self,
        ground_image: UInt8Array,
        camera: CameraModel,
        pixels_px: FloatArray,
        gravity_from_camera: FloatArray,
    ) -> FloatArray:
        """Depth (camera convention) of each pixel's ground-plane intersection.

        Args:
            ground_image: unused (the plane is geometric).
            camera: camera model.
            pixels_px: (N, 2) float64 pixels.
            gravity_from_camera: (3, 3) rotation optical -> gravity-aligned body frame.

        Returns:
            (N,) float64, metres; NaN for rays not below the horizon by ``min_depression_rad``.
        """
        rays = camera.rays(as_points(pixels_px, 2, "pixels_px"))
        r = check_rotation(gravity_from_camera, "gravity_from_camera")
        down = -(rays @ r[2, :])  # sine of the depression angle of each unit ray
        ok = down > math.sin(self.min_depression_rad)
        range_m = np.full(rays.shape[0], np.nan)
        range_m[ok] = self.camera_height_m / down[ok]
        if camera.depth_kind == "range":
            return range_m
        return np.asarray(range_m * rays[:, 2], dtype=np.float64)


@dataclass(frozen=True)
class ConstantRangeDepth:
    """The same depth for every pixel (z-depth for pinhole, range for panoramas).

    For a nadir camera over flat ground the z-depth of every pixel is the altitude; when the
    altitude is unknown any positive value works and the similarity scale absorbs it.

    Attributes:
        range_m: the depth, metres (or relative units).
    """

    range_m: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.range_m) and self.range_m > 0.0):
            raise ValueError(f"ConstantRangeDepth.range_m must be > 0, got {self.range_m}")

    def depth_at(
        self,
        ground_image: UInt8Array,
        camera: CameraModel,
        pixels_px: FloatArray,
        gravity_from_camera: FloatArray,
    ) -> FloatArray:
        """(N,) float64 filled with ``range_m``."""
        p = as_points(pixels_px, 2, "pixels_px")
        return np.full(p.shape[0], self.range_m, dtype=np.float64)


def sample_depth_map(depth_map: FloatArray, pixels_px: FloatArray) -> FloatArray:
    """Bilinear lookup of a dense depth map at sub-pixel positions.

    Args:
        depth_map: (H, W) float, depth per pixel (pixel centres at integer coordinates);
            NaN / <= 0 mark unknown depth.
        pixels_px: (N, 2) float64, pixels (u, v).

    Returns:
        (N,) float64 depth; NaN outside the map or where any contributing pixel is invalid.

    Raises:
        InvalidInputError: malformed map or pixels.
    """
    dm = np.asarray(depth_map, dtype=np.float64)
    if dm.ndim != 2 or dm.size == 0:
        raise InvalidInputError(f"depth_map must be a non-empty (H, W) array, got {dm.shape}")
    p = as_points(pixels_px, 2, "pixels_px")
    h, w = dm.shape
    u = p[:, 0]
    v = p[:, 1]
    inside = (u >= 0.0) & (u <= w - 1) & (v >= 0.0) & (v <= h - 1)
    u0 = np.clip(np.floor(u), 0, max(w - 2, 0)).astype(np.int64)
    v0 = np.clip(np.floor(v), 0, max(h - 2, 0)).astype(np.int64)
    u1 = np.minimum(u0 + 1, w - 1)
    v1 = np.minimum(v0 + 1, h - 1)
    fu = np.clip(u - u0, 0.0, 1.0)
    fv = np.clip(v - v0, 0.0, 1.0)
    d00, d01, d10, d11 = dm[v0, u0], dm[v0, u1], dm[v1, u0], dm[v1, u1]
    out = (d00 * (1 - fu) + d01 * fu) * (1 - fv) + (d10 * (1 - fu) + d11 * fu) * fv
    bad = (
        ~inside | ~np.isfinite(out) | (np.minimum(np.minimum(d00, d01), np.minimum(d10, d11)) <= 0)
    )
    out[bad] = np.nan
    return np.asarray(out, dtype=np.float64)
