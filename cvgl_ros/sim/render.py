"""Render camera views with exactly known poses from a georeferenced aerial patch.

The *world* is an :class:`~cvgl_ros.core.types.AerialPatch` (north-up, metric, usually big:
e.g. 4096 px built by a GeoTIFF patch source). Its ground is the plane ``up = 0`` of a local
ENU frame whose origin is the patch centre. A camera at ``camera_enu_m`` with orientation
``world_from_camera`` sees, through every pixel, a ray that hits that plane; the rendered pixel
is the world pixel at the hit point (bilinear, from a pyramid level matched to the footprint so
that a coarse camera does not alias a fine orthophoto).

For a pinhole camera without distortion this is exactly the ground-plane homography
``image_from_world_px = K R^T [e1, e2, -C] world_en_from_px``; the implementation casts one ray
per pixel instead, which gives the same image, also handles lens distortion and any camera model
with ``rays()``, and knows which pixels see the sky (rays that never reach the ground).

Frames (REP-103/105): world ENU, body FLU, camera optical (z forward, x right, y down).
``world_from_body = Rz(yaw) Ry(pitch) Rx(roll)`` (the ROS fixed-axis roll-pitch-yaw
convention; positive pitch turns the body +x axis *down*). Mounts:

- ``nadir``: the optical axis points along body -z (down) and the image top points to body +x,
  so the image is "north-up" when ``yaw = pi / 2``.
- ``forward``: the optical axis points along body +x, the image top along body +z.

The forward ground-level view is a simplification: the whole scene is flat (the orthophoto is a
texture on the plane ``up = 0``), so there is no parallax, no occlusion and no vertical
structure; the sky above the horizon is a plain gradient. It exercises the lifting of a
forward camera with ground-plane depth end to end, not the appearance gap of real street views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import cv2
import numpy as np

from cvgl_ros.core.mount import (
    BODY_FROM_OPTICAL_FORWARD,
    BODY_FROM_OPTICAL_NADIR,
    rot_x,
    rot_y,
    rot_z,
)
from cvgl_ros.core.types import AerialPatch, BoolArray, FloatArray, UInt8Array

Mount = Literal["nadir", "forward"]

# Columns: the optical x, y, z axes expressed in the FLU body frame (the core's mounts).
_BODY_FROM_CAMERA: dict[str, FloatArray] = {
    "nadir": BODY_FROM_OPTICAL_NADIR,
    "forward": BODY_FROM_OPTICAL_FORWARD,
}

# Sky colours (RGB) at the horizon and at the top of a forward image.
_SKY_HORIZON_RGB = np.array([205.0, 220.0, 235.0])
_SKY_ZENITH_RGB = np.array([120.0, 160.0, 215.0])


class RayCamera(Protocol):
    """What the renderer needs of a camera model (``cvgl_ros.core.camera`` models fit)."""

    @property
    def width_px(self) -> int:
        """Image width, pixels."""
        ...

    @property
    def height_px(self) -> int:
        """Image height, pixels."""
        ...

    def rays(self, pixels_px: FloatArray) -> FloatArray:
        """(N, 2) pixels (u, v) -> (N, 3) unit rays in the optical frame."""
        ...


def body_from_camera_for_mount(mount: Mount) -> FloatArray:
    """Rotation of a camera mount, optical frame -> FLU body frame.

    Args:
        mount: ``"nadir"`` (looking down, image top = body +x) or ``"forward"``.

    Returns:
        (3, 3) float64 rotation matrix.

    Raises:
        ValueError: for an unknown mount.
    """
    try:
        return _BODY_FROM_CAMERA[mount].copy()
    except KeyError:
        raise ValueError(f"mount must be 'nadir' or 'forward', got {mount!r}") from None


def world_from_body_rotation(
    yaw_rad: float, pitch_rad: float = 0.0, roll_rad: float = 0.0
) -> FloatArray:
    """``Rz(yaw) Ry(pitch) Rx(roll)``: FLU body frame -> ENU world frame.

    Args:
        yaw_rad: ENU heading of body +x (0 = east, counter-clockwise), radians.
        pitch_rad: rotation about body +y (left), radians; positive turns the nose down.
        roll_rad: rotation about body +x, radians; positive lowers the right side.

    Returns:
        (3, 3) float64 rotation matrix.
    """
    return np.asarray(rot_z(yaw_rad) @ rot_y(pitch_rad) @ rot_x(roll_rad), dtype=np.float64)


def world_from_camera_rotation(
    mount: Mount, yaw_enu_rad: float, pitch_rad: float = 0.0, roll_rad: float = 0.0
) -> FloatArray:
    """Camera optical frame -> ENU world frame for a body pose and a mount.

    Returns:
        (3, 3) float64 rotation matrix ``world_from_body @ body_from_camera``.
    """
    return world_from_body_rotation(yaw_enu_rad, pitch_rad, roll_rad) @ body_from_camera_for_mount(
        mount
    )


@dataclass(frozen=True)
class RenderedView:
    """A rendered camera image and which of its pixels saw mapped ground.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        ground_mask: (H, W) bool, True where the pixel's ray hit the ground inside the world's
            valid imagery.
        sky_mask: (H, W) bool, True where the ray never reaches the ground (above the horizon).
    """

    image: UInt8Array
    ground_mask: BoolArray
    sky_mask: BoolArray

    @property
    def coverage(self) -> float:
        """Share of pixels that show mapped ground, in [0, 1]."""
        return float(np.mean(self.ground_mask))


class WorldRenderer:
    """Renders views of one world patch; keeps its image pyramid between frames.

    Args:
        world: the north-up aerial patch used as the textured ground plane. Its centre is the
            origin of the ENU frame that camera positions are given in.
        max_range_m: rays that hit the ground farther than this (horizontally) are treated as
            sky, so a forward camera does not smear the far, sub-pixel texture.
    """

    def __init__(self, world: AerialPatch, max_range_m: float = 1.0e4) -> None:
        if not (math.isfinite(max_range_m) and max_range_m > 0.0):
            raise ValueError(f"max_range_m must be positive, got {max_range_m}")
        self.world = world
        self.max_range_m = float(max_range_m)
        self._levels: list[tuple[UInt8Array, UInt8Array]] = [
            (world.image, world.valid_mask.astype(np.uint8) * 255)
        ]
        # The last camera's pixel rays: a flight renders every frame with the same camera.
        self._rays_of: tuple[RayCamera, FloatArray] | None = None

    def _camera_rays(self, camera: RayCamera) -> FloatArray:
        """(H * W, 3) float64 unit rays of every pixel (row-major), optical frame.

        Cached for the last camera object (camera models are immutable).
        """
        cached = self._rays_of
        if cached is not None and cached[0] is camera:
            return cached[1]
        w_px, h_px = int(camera.width_px), int(camera.height_px)
        uu, vv = np.meshgrid(np.arange(w_px, dtype=np.float64), np.arange(h_px, dtype=np.float64))
        pixels = np.stack([uu.ravel(), vv.ravel()], axis=1)
        rays = np.asarray(camera.rays(pixels), dtype=np.float64)
        self._rays_of = (camera, rays)
        return rays

    def _level(self, index: int) -> tuple[UInt8Array, UInt8Array]:
        while len(self._levels) <= index:
            img, mask = self._levels[-1]
            if min(img.shape[:2]) < 4:
                break
            down = np.asarray(cv2.pyrDown(img), dtype=np.uint8)
            self._levels.append((down, np.asarray(cv2.pyrDown(mask), dtype=np.uint8)))
        return self._levels[min(index, len(self._levels) - 1)]

    def render(
        self, camera: RayCamera, camera_enu_m: FloatArray, world_from_camera: FloatArray
    ) -> RenderedView:
        """Render the view of a camera at a given pose.

        Args:
            camera: the camera model (``rays()`` and ``width_px``/``height_px``).
            camera_enu_m: (3,) float64, metres, camera centre (east, north, up) relative to the
                world patch centre; ``up`` must be > 0 (above the ground).
            world_from_camera: (3, 3) float64 rotation, optical frame -> ENU.

        Returns:
            The rendered view; black where the ground has no imagery, a sky gradient above the
            horizon.

        Raises:
            ValueError: on a malformed pose or a camera below the ground.
        """
        c = np.asarray(camera_enu_m, dtype=np.float64).reshape(-1)
        r = np.asarray(world_from_camera, dtype=np.float64)
        if c.shape != (3,) or not np.all(np.isfinite(c)):
            raise ValueError(f"camera_enu_m must be a finite (3,) array, got {camera_enu_m!r}")
        if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-6):
            raise ValueError("world_from_camera must be a (3, 3) rotation matrix")
        if c[2] <= 0.0:
            raise ValueError(f"camera height must be above the ground, got up = {c[2]} m")
        w_px, h_px = int(camera.width_px), int(camera.height_px)
        rays_w = self._camera_rays(camera) @ r.T  # (N, 3) ENU
        down = -rays_w[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(down > 1e-9, c[2] / down, np.inf)
        hit_en = c[None, :2] + rays_w[:, :2] * t[:, None]
        horiz_range = np.hypot(hit_en[:, 0] - c[0], hit_en[:, 1] - c[1])
        sky = ~np.isfinite(t) | (horiz_range > self.max_range_m)
        hit_en[sky] = 0.0
        world_px = self.world.en_to_pixel(hit_en)  # (N, 2) level-0 pixel coordinates
        map_u = world_px[:, 0].reshape(h_px, w_px)
        map_v = world_px[:, 1].reshape(h_px, w_px)
        sky_img = sky.reshape(h_px, w_px)

        level = self._pyramid_level(map_u, map_v, sky_img)
        img, mask = self._level(level)
        scale = 2.0**level
        mu = ((map_u + 0.5) / scale - 0.5).astype(np.float32)
        mv = ((map_v + 0.5) / scale - 0.5).astype(np.float32)
        out: UInt8Array = np.asarray(
            cv2.remap(
                img,
                mu,
                mv,
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(0, 0, 0),
            ),
            dtype=np.uint8,
        )
        valid = (
            cv2.remap(
                mask, mu, mv, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
            )
            > 127
        )
        ground = valid & ~sky_img
        out[~ground] = 0
        if np.any(sky_img):
            out[sky_img] = self._sky_colours(rays_w[:, 2].reshape(h_px, w_px)[sky_img])
        return RenderedView(image=out, ground_mask=ground, sky_mask=sky_img)

    def _pyramid_level(self, map_u: FloatArray, map_v: FloatArray, sky: BoolArray) -> int:
        """Pyramid level whose pixel size matches the camera footprint (25th percentile)."""
        if map_u.shape[0] < 2 or map_u.shape[1] < 2:
            return 0
        du = np.hypot(np.diff(map_u, axis=1)[:-1, :], np.diff(map_v, axis=1)[:-1, :])
        dv = np.hypot(np.diff(map_u, axis=0)[:, :-1], np.diff(map_v, axis=0)[:, :-1])
        ok = ~(sky[:-1, :-1] | sky[1:, 1:] | sky[:-1, 1:] | sky[1:, :-1])
        if not np.any(ok):
            return 0
        footprint_px = float(np.percentile(np.maximum(du, dv)[ok], 25))
        if not math.isfinite(footprint_px) or footprint_px < 2.0:
            return 0
        return math.floor(math.log2(footprint_px))

    @staticmethod
    def _sky_colours(up_component: FloatArray) -> UInt8Array:
        a = np.clip(up_component, 0.0, 1.0)[:, None] ** 0.5
        rgb = (1.0 - a) * _SKY_HORIZON_RGB[None, :] + a * _SKY_ZENITH_RGB[None, :]
        return np.asarray(np.clip(rgb, 0, 255), dtype=np.uint8)


def _camera_enu_m(camera_en_m: FloatArray, height_m: float) -> FloatArray:
    """(2,) camera (east, north) metres and a height -> (3,) float64 ENU position.

    Raises:
        ValueError: ``camera_en_m`` does not hold exactly two values.
    """
    en = np.asarray(camera_en_m, dtype=np.float64).reshape(-1)
    if en.shape != (2,):
        raise ValueError(f"camera_en_m must be (2,), got shape {en.shape}")
    return np.array([en[0], en[1], float(height_m)])


def render_nadir_view(
    world: AerialPatch,
    camera: RayCamera,
    camera_en_m: FloatArray,
    altitude_m: float,
    yaw_enu_rad: float,
    roll_rad: float = 0.0,
    pitch_rad: float = 0.0,
) -> UInt8Array:
    """Image of a down-looking (nadir-mounted) drone camera over the world patch.

    Args:
        world: north-up aerial patch, the textured ground plane.
        camera: pinhole camera model (any model with ``rays()`` works).
        camera_en_m: (2,) float64, metres, camera (east, north) relative to the world centre.
        altitude_m: camera height above the ground, metres (> 0).
        yaw_enu_rad: ENU heading of body +x (= image top), radians.
        roll_rad: body roll, radians (camera jitter / gimbal error).
        pitch_rad: body pitch, radians; a large pitch gives an oblique view.

    Returns:
        (H, W, 3) uint8 RGB; black where the world has no imagery.
    """
    pose = _camera_enu_m(camera_en_m, altitude_m)
    rot = world_from_camera_rotation("nadir", yaw_enu_rad, pitch_rad, roll_rad)
    return WorldRenderer(world).render(camera, pose, rot).image


def render_ground_view(
    world: AerialPatch,
    camera: RayCamera,
    camera_en_m: FloatArray,
    camera_height_m: float,
    yaw_enu_rad: float,
    pitch_rad: float = 0.0,
    roll_rad: float = 0.0,
    max_range_m: float = 200.0,
) -> UInt8Array:
    """Image of a forward-looking ground-level camera over a *flat* textured ground.

    A simplification (see the module docstring): the orthophoto is painted on the plane, the sky
    is a gradient; ground beyond ``max_range_m`` is drawn as sky.

    Args:
        world: north-up aerial patch, the textured ground plane.
        camera: camera model with ``rays()``.
        camera_en_m: (2,) float64, metres, camera (east, north) relative to the world centre.
        camera_height_m: camera height above the ground, metres (> 0).
        yaw_enu_rad: ENU heading of the optical axis (body +x), radians.
        pitch_rad: positive tilts the camera down, radians.
        roll_rad: body roll, radians.
        max_range_m: farthest ground drawn, metres.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    pose = _camera_enu_m(camera_en_m, camera_height_m)
    rot = world_from_camera_rotation("forward", yaw_enu_rad, pitch_rad, roll_rad)
    return WorldRenderer(world, max_range_m=max_range_m).render(camera, pose, rot).image
