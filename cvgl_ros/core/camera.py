"""Camera models: pixels <-> unit rays in the camera optical frame (z forward, x right, y down).

Two models, both frozen and vectorised over (N, 2) pixel arrays:

- :class:`PinholeCamera`: the ROS ``sensor_msgs/CameraInfo`` model. Pixel coordinates follow the
  ROS/OpenCV convention (the centre of pixel (i, j) is at (u, v) = (i, j)). Optional
  ``plumb_bob`` (k1, k2, p1, p2, k3) or ``rational_polynomial`` (k1, k2, p1, p2, k3, k4, k5, k6)
  distortion; points are undistorted with ``cv2.undistortPoints``. Depth is z-depth.
- :class:`EquirectangularCamera`: a 360 x 180 degree panorama. Column u spans longitude
  [-pi, pi) (0 = optical +z, positive to the right), row v spans latitude [pi/2, -pi/2]
  (top = up). The centre of pixel (i, j) is at (u, v) = (i, j). Depth is range along the ray.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cvgl_ros.core.errors import InvalidInputError
from cvgl_ros.core.types import FloatArray

DepthKind = Literal["z", "range"]

_SUPPORTED_DISTORTION_MODELS = ("plumb_bob", "rational_polynomial")


def as_points(array: object, dims: int, name: str, check_finite: bool = True) -> FloatArray:
    """Validate and convert an (N, dims) array of finite floats.

    Args:
        check_finite: False leaves the NaN/inf check to the caller (the compiled RANSAC kernel
            does it in its first pass).

    Raises:
        InvalidInputError: wrong shape, empty, NaN or inf.
    """
    a = np.asarray(array, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != dims:
        raise InvalidInputError(f"{name} must be an (N, {dims}) array, got shape {a.shape}")
    if a.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty")
    if check_finite and not np.isfinite(a).all():
        raise InvalidInputError(f"{name} contains NaN or inf")
    return a


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole camera with optional plumb_bob / rational_polynomial distortion.

    Attributes:
        width_px: image width, pixels.
        height_px: image height, pixels.
        fx_px, fy_px: focal lengths, pixels.
        cx_px, cy_px: principal point, pixels (ROS convention: pixel centres at integers).
        distortion: () for none, or (k1, k2, p1, p2[, k3[, k4, k5, k6]]).
    """

    width_px: int
    height_px: int
    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float
    distortion: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if int(self.width_px) <= 0 or int(self.height_px) <= 0:
            raise ValueError(
                f"width_px/height_px must be positive, got {self.width_px}x{self.height_px}"
            )
        for name in ("fx_px", "fy_px"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0.0):
                raise ValueError(f"{name} must be positive and finite, got {v}")
        for name in ("cx_px", "cy_px"):
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"{name} must be finite")
        dist = tuple(float(d) for d in self.distortion)
        if not all(math.isfinite(d) for d in dist):
            raise ValueError("distortion coefficients must be finite")
        if all(d == 0.0 for d in dist):
            dist = ()
        if len(dist) not in (0, 4, 5, 8):
            raise ValueError(
                f"distortion must have 0, 4, 5 or 8 coefficients (k1 k2 p1 p2 [k3 [k4 k5 k6]]), "
                f"got {len(dist)}"
            )
        object.__setattr__(self, "distortion", dist)
        object.__setattr__(self, "width_px", int(self.width_px))
        object.__setattr__(self, "height_px", int(self.height_px))

    @classmethod
    def from_camera_info(
        cls,
        width: int,
        height: int,
        k: Sequence[float],
        d: Sequence[float],
        distortion_model: str,
    ) -> PinholeCamera:
        """Build from ``sensor_msgs/CameraInfo`` fields.

        Args:
            width: image width, pixels.
            height: image height, pixels.
            k: 9 floats, row-major 3x3 intrinsic matrix.
            d: distortion coefficients.
            distortion_model: ``plumb_bob``, ``rational_polynomial`` or empty (no distortion).

        Raises:
            ValueError: malformed K, unsupported distortion model or coefficient count.
        """
        kk = [float(x) for x in k]
        if len(kk) != 9:
            raise ValueError(f"k must have 9 elements, got {len(kk)}")
        if kk[1] != 0.0 or kk[3] != 0.0 or kk[6] != 0.0 or kk[7] != 0.0 or kk[8] != 1.0:
            raise ValueError(f"k must be [fx 0 cx 0 fy cy 0 0 1], got {kk}")
        dd = tuple(float(x) for x in d)
        model = distortion_model.strip().lower()
        if model in ("", "none") or all(x == 0.0 for x in dd):
            dd = ()
        elif model not in _SUPPORTED_DISTORTION_MODELS:
            raise ValueError(
                f"distortion_model {distortion_model!r} not supported; use one of "
                f"{_SUPPORTED_DISTORTION_MODELS} (or an empty model for none)"
            )
        elif model == "plumb_bob":
            dd = dd[:5]
        return cls(int(width), int(height), kk[0], kk[4], kk[2], kk[5], dd)

    @property
    def depth_kind(self) -> DepthKind:
        """Depth convention of this model: ``"z"`` (z-depth along the optical axis)."""
        return "z"

    @property
    def k_matrix(self) -> FloatArray:
        """(3, 3) float64 intrinsic matrix."""
        return np.array(
            [[self.fx_px, 0.0, self.cx_px], [0.0, self.fy_px, self.cy_px], [0.0, 0.0, 1.0]]
        )

    def normalized(self, pixels_px: FloatArray) -> FloatArray:
        """Pixels -> undistorted normalised image coordinates (x/z, y/z), (N, 2) float64."""
        p = as_points(pixels_px, 2, "pixels_px")
        if not self.distortion:
            return np.stack(
                [(p[:, 0] - self.cx_px) / self.fx_px, (p[:, 1] - self.cy_px) / self.fy_px],
                axis=1,
            )
        import cv2  # only needed with distortion

        dist = np.asarray(self.distortion, dtype=np.float64)
        und = cv2.undistortPointsIter(
            p.reshape(-1, 1, 2),
            self.k_matrix,
            dist,
            np.eye(3),
            np.eye(3),
            (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12),
        )
        return np.asarray(und, dtype=np.float64).reshape(-1, 2)

    def rays(self, pixels_px: FloatArray) -> FloatArray:
        """Unit rays of pixels in the camera optical frame.

        Args:
            pixels_px: (N, 2) float64, pixels (u right, v down).

        Returns:
            (N, 3) float64, unit vectors, camera optical frame (z forward, x right, y down).

        Raises:
            InvalidInputError: wrong shape, empty, NaN or inf.
        """
        xy = self.normalized(pixels_px)
        rays = np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1)
        return np.asarray(rays / np.linalg.norm(rays, axis=1, keepdims=True), dtype=np.float64)

    def project(self, points_optical: FloatArray) -> FloatArray:
        """Project 3-D points (camera optical frame) to pixels, applying distortion.

        Args:
            points_optical: (N, 3) float64, metres (any unit), camera optical frame.

        Returns:
            (N, 2) float64, pixels (u, v); NaN rows for points with z <= 0 (behind the camera).

        Raises:
            InvalidInputError: wrong shape, empty, NaN or inf.
        """
        p = as_points(points_optical, 3, "points_optical")
        z = p[:, 2]
        front = z > 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            x = p[:, 0] / z
            y = p[:, 1] / z
        if self.distortion:
            c = np.zeros(8)
            c[: len(self.distortion)] = self.distortion
            k1, k2, p1, p2, k3, k4, k5, k6 = c
            r2 = x * x + y * y
            radial = (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (
                1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))
            )
            xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
            yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
            x, y = xd, yd
        uv = np.stack([self.fx_px * x + self.cx_px, self.fy_px * y + self.cy_px], axis=1)
        uv[~front] = np.nan
        return uv

    def backproject(self, pixels_px: FloatArray, depth: FloatArray) -> FloatArray:
        """Pixels + z-depth -> 3-D points in the optical frame.

        Args:
            pixels_px: (N, 2) float64, pixels.
            depth: (N,) float64, z-depth (metres or relative units); NaN propagates.

        Returns:
            (N, 3) float64, camera optical frame, same unit as ``depth``.
        """
        xy = self.normalized(pixels_px)
        d = np.asarray(depth, dtype=np.float64).reshape(-1)
        if d.shape[0] != xy.shape[0]:
            raise InvalidInputError(f"depth has {d.shape[0]} values for {xy.shape[0]} pixels")
        return np.stack([xy[:, 0] * d, xy[:, 1] * d, d], axis=1)


@dataclass(frozen=True)
class EquirectangularCamera:
    """Equirectangular 360 panorama (longitude across, latitude down).

    Attributes:
        width_px: panorama width, pixels (covers 360 degrees).
        height_px: panorama height, pixels (covers 180 degrees).
    """

    width_px: int
    height_px: int

    def __post_init__(self) -> None:
        if int(self.width_px) <= 0 or int(self.height_px) <= 0:
            raise ValueError(
                f"width_px/height_px must be positive, got {self.width_px}x{self.height_px}"
            )
        object.__setattr__(self, "width_px", int(self.width_px))
        object.__setattr__(self, "height_px", int(self.height_px))

    @property
    def depth_kind(self) -> DepthKind:
        """Depth convention of this model: ``"range"`` (distance along the ray)."""
        return "range"

    def rays(self, pixels_px: FloatArray) -> FloatArray:
        """Unit rays of pixels, (N, 2) -> (N, 3) float64, camera optical frame.

        Raises:
            InvalidInputError: wrong shape, empty, NaN or inf.
        """
        p = as_points(pixels_px, 2, "pixels_px")
        lon = (p[:, 0] + 0.5) / self.width_px * 2.0 * math.pi - math.pi
        lat = math.pi / 2.0 - (p[:, 1] + 0.5) / self.height_px * math.pi
        cl = np.cos(lat)
        return np.stack([cl * np.sin(lon), -np.sin(lat), cl * np.cos(lon)], axis=1)

    def project(self, points_optical: FloatArray) -> FloatArray:
        """3-D points (optical frame) -> (N, 2) float64 pixels; NaN rows for the zero vector.

        Raises:
            InvalidInputError: wrong shape, empty, NaN or inf.
        """
        p = as_points(points_optical, 3, "points_optical")
        r = np.linalg.norm(p, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            lat = np.arcsin(np.clip(-p[:, 1] / r, -1.0, 1.0))
        lon = np.arctan2(p[:, 0], p[:, 2])
        u = (lon + math.pi) / (2.0 * math.pi) * self.width_px - 0.5
        v = (math.pi / 2.0 - lat) / math.pi * self.height_px - 0.5
        uv = np.stack([u, v], axis=1)
        uv[r == 0.0] = np.nan
        return uv

    def backproject(self, pixels_px: FloatArray, depth: FloatArray) -> FloatArray:
        """Pixels + range -> (N, 3) float64 points in the optical frame (unit of ``depth``)."""
        rays = self.rays(pixels_px)
        d = np.asarray(depth, dtype=np.float64).reshape(-1)
        if d.shape[0] != rays.shape[0]:
            raise InvalidInputError(f"depth has {d.shape[0]} values for {rays.shape[0]} pixels")
        return np.asarray(rays * d[:, None], dtype=np.float64)


CameraModel = PinholeCamera | EquirectangularCamera
"""Any supported camera model."""
