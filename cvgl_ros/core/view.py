"""Ground-resolution-adaptive matching: one ground sampling distance for camera and map.

A down-looking camera sees the ground at ``height / focal`` metres per pixel (its ground sampling
distance, GSD); the map has its own native GSD. Keypoints only match between images that show
the ground at about the same scale, and every resampling to a coarser grid throws detail away.
:func:`plan_view` therefore chooses, per frame:

- the **matching GSD** ``m_per_px``: the camera's GSD, but never finer than the map allows
  (``native_m_per_px / max_map_upsample``: upsampling a map further invents no detail) and never
  so fine that the camera view or the patch exceeds its pixel budget. When the camera is finer
  than the map this reads the map at the camera's GSD (the map is interpolated, its detail all
  kept) and leaves the camera image at full resolution; when the camera is coarser, the map is
  read at the camera's GSD (area-averaged: what the camera cannot resolve cannot match) -- in
  both cases nothing that both images show is thrown away;
- the **patch**: north-up at that GSD, covering the camera footprint plus ``coverage_n_sigma``
  standard deviations of the GNSS prior;
- the **view** of the camera image handed to the matcher (:class:`MatchView`): scaled to the
  matching GSD and, with a yaw prior, rotated so that north is up. Features that are not
  rotation invariant (learned features, upright SIFT) then see the camera image in the map's
  orientation; ``upright`` says whether the remaining yaw uncertainty is small enough to drop
  rotation invariance (which makes descriptors more distinctive).

Everything here is geometry on the camera model and ``gravity_from_camera`` (numpy only); the
matchers (``cvgl_ros.models``) resample the image with :func:`view_from_image`.

The camera's height above the ground comes from the GNSS altitude minus the terrain elevation
(:class:`~cvgl_ros.core.config.HeightConfig`) or, failing that, from the depth provider.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.core.camera import CameraModel, PinholeCamera
from cvgl_ros.core.config import ViewConfig
from cvgl_ros.core.errors import InvalidInputError
from cvgl_ros.core.mount import check_rotation
from cvgl_ros.core.types import FloatArray

# A pixel step used to differentiate the ground footprint, pixels.
_STEP_PX = 1.0
# Ground distance used to find the north direction in the image, metres per metre of height.
_NORTH_STEP = 0.05


@dataclass(frozen=True)
class MatchView:
    """How the camera image is presented to the matcher.

    The view is the camera image scaled by ``scale`` (about pixel centres) and rotated by
    ``rotation_rad`` about its centre, on a canvas that holds the whole rotated image
    (:func:`view_from_image`).

    Attributes:
        scale: view pixels per camera pixel (<= 1: the camera image is downsampled).
        rotation_rad: rotation of image coordinates (u right, v down), radians: a view pixel is
            ``Rot(rotation_rad) @ (scaled pixel - centre) + canvas centre`` with the standard
            2-D rotation matrix. With a yaw prior it turns the image's north direction to
            "up" (-v), i.e. the view is north-up like the patch; 0 without one.
        upright: True when the view is north-up to within the yaw prior's uncertainty, so that
            matchers may use orientation-dependent (upright) descriptors.
        m_per_px: ground sampling distance of the view at the image centre, metres per pixel
            (the patch's resolution).
    """

    scale: float = 1.0
    rotation_rad: float = 0.0
    upright: bool = False
    m_per_px: float = math.nan

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0.0):
            raise InvalidInputError(f"MatchView.scale must be > 0, got {self.scale}")
        if not math.isfinite(self.rotation_rad):
            raise InvalidInputError(f"MatchView.rotation_rad must be finite: {self.rotation_rad}")


@dataclass(frozen=True)
class ViewPlan:
    """What :func:`plan_view` decided for one frame.

    Attributes:
        view: how the camera image is presented to the matcher.
        patch_m_per_px: resolution of the aerial patch to read, metres per pixel.
        patch_size_px: edge of the square aerial patch, pixels.
        camera_m_per_px: the camera's own ground sampling distance at the image centre, metres
            per pixel.
        footprint_radius_m: distance from the camera's nadir to the farthest image corner on
            the ground, metres.
        height_m: camera height above the ground used, metres.
    """

    view: MatchView
    patch_m_per_px: float
    patch_size_px: int
    camera_m_per_px: float
    footprint_radius_m: float
    height_m: float


def _ground_points(
    camera: CameraModel, r_gc: FloatArray, pixels_px: FloatArray, height_m: float
) -> FloatArray:
    """(N, 2) planar ground points (gravity frame, metres) of pixels; NaN above the horizon."""
    rays = camera.rays(pixels_px) @ r_gc.T
    down = -rays[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(down > 1e-6, height_m / down, np.nan)
    return np.asarray(rays[:, :2] * t[:, None], dtype=np.float64)


def camera_ground_geometry(
    camera: CameraModel,
    gravity_from_camera: FloatArray,
    height_m: float,
    max_off_nadir_rad: float,
) -> tuple[float, float] | None:
    """The camera's ground sampling distance and footprint radius over flat ground.

    Args:
        camera: pinhole camera model (panoramas return None).
        gravity_from_camera: (3, 3) rotation optical -> gravity-aligned body frame.
        height_m: camera height above the ground, metres (> 0).
        max_off_nadir_rad: cameras whose optical axis is farther than this from straight down
            return None (their GSD varies too much over the image for one view scale).

    Returns:
        ``(m_per_px, footprint_radius_m)``: the square root of the ground area of one pixel at
        the principal point, metres, and the largest distance from the camera's nadir to an
        image corner's ground point (the centre's ground point when a corner is above the
        horizon), metres; or None when the camera does not look down.
    """
    if not (math.isfinite(height_m) and height_m > 0.0):
        return None
    if not isinstance(camera, PinholeCamera):  # panoramas see every direction
        return None
    r_gc = check_rotation(gravity_from_camera, "gravity_from_camera", tol=1e-4)
    axis_down = -float(r_gc[2, 2])  # z component of the optical axis, negated
    if axis_down < math.cos(max_off_nadir_rad):
        return None
    cx = float(camera.cx_px)
    cy = float(camera.cy_px)
    w = float(camera.width_px)
    h = float(camera.height_px)
    pix = np.array(
        [
            [cx, cy],
            [cx + _STEP_PX, cy],
            [cx, cy + _STEP_PX],
            [-0.5, -0.5],
            [w - 0.5, -0.5],
            [-0.5, h - 0.5],
            [w - 0.5, h - 0.5],
        ]
    )
    ground = _ground_points(camera, r_gc, pix, height_m)
    jac = np.stack([ground[1] - ground[0], ground[2] - ground[0]], axis=1) / _STEP_PX
    m_per_px = math.sqrt(abs(float(np.linalg.det(jac))))
    corners = ground[3:]
    radius = np.linalg.norm(corners, axis=1)
    radius_m = float(np.max(radius)) if np.all(np.isfinite(radius)) else math.nan
    if not (math.isfinite(m_per_px) and m_per_px > 0.0 and math.isfinite(radius_m)):
        return None
    return m_per_px, radius_m


def north_up_rotation_rad(
    camera: CameraModel,
    gravity_from_camera: FloatArray,
    yaw_enu_rad: float,
) -> float | None:
    """The image rotation (:attr:`MatchView.rotation_rad`) that makes north point up.

    North on the ground below the principal point is projected into the image; the returned
    angle rotates that image direction onto -v (up).

    Args:
        camera: pinhole camera model.
        gravity_from_camera: (3, 3) rotation optical -> gravity-aligned body frame.
        yaw_enu_rad: ENU yaw of the body +x axis, radians.

    Returns:
        Radians, or None when north cannot be projected (camera not looking down).
    """
    if not isinstance(camera, PinholeCamera):
        return None
    r_gc = check_rotation(gravity_from_camera, "gravity_from_camera", tol=1e-4)
    cx = float(camera.cx_px)
    cy = float(camera.cy_px)
    centre = np.array([[cx, cy]])
    ground = _ground_points(camera, r_gc, centre, 1.0)[0]
    if not np.all(np.isfinite(ground)):
        return None
    # World north (ENU +y) in the gravity-aligned body frame: rotate by -yaw about z.
    north_g = np.array([math.sin(yaw_enu_rad), math.cos(yaw_enu_rad)])
    pts_g = np.array(
        [
            [ground[0], ground[1], -1.0],
            [ground[0] + _NORTH_STEP * north_g[0], ground[1] + _NORTH_STEP * north_g[1], -1.0],
        ]
    )
    pts_c = pts_g @ r_gc  # (R_gc^T p^T)^T: gravity frame -> optical frame
    uv = camera.project(pts_c)
    if not np.all(np.isfinite(uv)):
        return None
    du, dv = (uv[1] - uv[0]).tolist()
    if math.hypot(du, dv) < 1e-9:
        return None
    alpha = math.atan2(dv, du)
    return float(math.remainder(-0.5 * math.pi - alpha, 2.0 * math.pi))


def plan_view(
    camera: CameraModel,
    gravity_from_camera: FloatArray,
    height_m: float,
    native_m_per_px: float,
    prior_sigma_m: float,
    config: ViewConfig,
    yaw_prior_rad: float | None = None,
    yaw_prior_sigma_rad: float | None = None,
) -> ViewPlan | None:
    """Choose the matching GSD, the patch and the camera view for one frame.

    Args:
        camera: camera model of the frame.
        gravity_from_camera: (3, 3) rotation optical -> gravity-aligned body frame.
        height_m: camera height above the ground, metres.
        native_m_per_px: the map's native resolution around the prior, metres per pixel.
        prior_sigma_m: largest horizontal standard deviation of the GNSS prior, metres.
        config: limits and switches.
        yaw_prior_rad: ENU yaw prior of body +x, radians, or None.
        yaw_prior_sigma_rad: its standard deviation, radians (None: unknown, taken as large).

    Returns:
        The plan, or None when the camera does not look down steeply enough (the caller then
        uses the fixed patch configuration).
    """
    geometry = camera_ground_geometry(
        camera, gravity_from_camera, height_m, config.max_off_nadir_rad
    )
    if geometry is None:
        return None
    camera_gsd, radius_m = geometry
    native = float(native_m_per_px)
    if not (math.isfinite(native) and native > 0.0):
        raise InvalidInputError(f"native_m_per_px must be > 0, got {native_m_per_px}")
    sigma = max(float(prior_sigma_m), 0.0) if math.isfinite(prior_sigma_m) else 0.0
    half_m = radius_m + config.coverage_n_sigma * sigma + config.patch_margin_m
    width = float(camera.width_px)
    height = float(camera.height_px)  # plan_view only runs when the geometry exists (pinhole)
    gsd = max(
        camera_gsd,
        native / config.max_map_upsample,
        # The camera view's longer side within its budget, and the patch within its own.
        camera_gsd * max(width, height) / config.max_view_side_px,
        2.0 * half_m / config.max_patch_size_px,
    )
    size_px = int(min(config.max_patch_size_px, math.ceil(2.0 * half_m / gsd)))
    rotation = 0.0
    upright = False
    if config.pre_rotate and yaw_prior_rad is not None and math.isfinite(yaw_prior_rad):
        north_up = north_up_rotation_rad(camera, gravity_from_camera, yaw_prior_rad)
        if north_up is not None:
            rotation = north_up
            upright = (
                yaw_prior_sigma_rad is not None
                and math.isfinite(yaw_prior_sigma_rad)
                and yaw_prior_sigma_rad <= config.upright_max_yaw_sigma_rad
            )
    view = MatchView(
        scale=min(1.0, camera_gsd / gsd),
        rotation_rad=rotation,
        upright=upright,
        m_per_px=gsd,
    )
    return ViewPlan(
        view=view,
        patch_m_per_px=gsd,
        patch_size_px=max(size_px, config.min_patch_size_px),
        camera_m_per_px=camera_gsd,
        footprint_radius_m=radius_m,
        height_m=float(height_m),
    )


def view_from_image(
    width_px: int, height_px: int, view: MatchView
) -> tuple[FloatArray, tuple[int, int], tuple[int, int]]:
    """The affine map from camera-image pixels to view pixels and the sizes involved.

    Pixel centres are at integer coordinates. The image is first resized to
    ``round(W * scale) x round(H * scale)`` (so the exact axis scales are those sizes over
    ``W``, ``H``), then rotated about its centre onto the smallest canvas that holds it.

    Args:
        width_px: camera image width, pixels.
        height_px: camera image height, pixels.
        view: the view.

    Returns:
        ``(view_from_image, canvas_size, resized_size)``: (2, 3) float64 affine ``[A | b]``
        with ``view_px = A @ image_px + b``; the canvas (width, height) in pixels; the
        intermediate resized image (width, height) in pixels.
    """
    if width_px < 1 or height_px < 1:
        raise InvalidInputError(f"image size must be positive, got {width_px}x{height_px}")
    rw = max(1, round(width_px * view.scale))
    rh = max(1, round(height_px * view.scale))
    sx, sy = rw / width_px, rh / height_px
    # Resize about pixel centres: q = (p + 0.5) * s - 0.5.
    scale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    # The rotation turns the image direction d = Rot(-rotation) @ up onto up; rounding the
    # resized size scales x and y slightly differently, so turn the RESIZED d onto up.
    theta = view.rotation_rad
    if theta != 0.0 and sx != sy:
        d = (-sx * math.sin(theta), -sy * math.cos(theta))  # S @ Rot(-theta) @ (0, -1)
        theta = math.remainder(-0.5 * math.pi - math.atan2(d[1], d[0]), 2.0 * math.pi)
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    corners = np.array([[-0.5, -0.5], [rw - 0.5, -0.5], [-0.5, rh - 0.5], [rw - 0.5, rh - 0.5]])
    centre = np.array([(rw - 1) / 2.0, (rh - 1) / 2.0])
    turned = (corners - centre) @ rot.T
    extent = turned.max(axis=0) - turned.min(axis=0)
    cw, ch = math.ceil(extent[0] - 1e-9), math.ceil(extent[1] - 1e-9)
    canvas_centre = np.array([(cw - 1) / 2.0, (ch - 1) / 2.0])
    turn = np.eye(3)
    turn[:2, :2] = rot
    turn[:2, 2] = canvas_centre - rot @ centre
    affine = (turn @ scale)[:2]
    return np.asarray(affine, dtype=np.float64), (cw, ch), (rw, rh)


def apply_affine(affine: FloatArray, points_px: FloatArray) -> FloatArray:
    """(N, 2) points mapped by a (2, 3) affine."""
    p = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    a = np.asarray(affine, dtype=np.float64)
    return np.asarray(p @ a[:, :2].T + a[:, 2], dtype=np.float64)


def invert_affine(affine: FloatArray) -> FloatArray:
    """The (2, 3) inverse of a (2, 3) affine."""
    a = np.asarray(affine, dtype=np.float64)
    inv = np.linalg.inv(a[:, :2])
    return np.asarray(np.concatenate([inv, -(inv @ a[:, 2])[:, None]], axis=1), np.float64)
