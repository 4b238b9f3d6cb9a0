"""Geometry of feature cells: lifted ground points and metric aerial points (numpy).

The matcher works on a grid of feature cells (one per 14 x 14 ViT patch of the resized input).
For training, each ground cell gets one planar point in the gravity-aligned body frame (its
pixel centre lifted with depth, vertical axis dropped, exactly as the node's lifting does) and
each aerial cell gets its (east, north) offset from the patch centre. Pixel convention: the
cell (row i, column j) of an (h, w) grid over an (H, W) image has its centre at the original
image's continuous pixel coordinates ``((j + 0.5) W / w - 0.5, (i + 0.5) H / h - 0.5)`` (pixel
centres at integers, as in :mod:`cvgl_ros.core.camera`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cvgl_ros.core.camera import CameraModel
from cvgl_ros.core.config import LiftingConfig
from cvgl_ros.core.lifting import lift_pixels
from cvgl_ros.core.types import AerialPatch, BoolArray, FloatArray
from cvgl_ros.models.matching import token_centers_px

PATCH_SIZE_PX = 14
"""ViT patch size of DINOv2: every input side is a multiple of it."""


def cell_centers_px(image_size_px: tuple[int, int], grid_size: tuple[int, int]) -> FloatArray:
    """Pixel centres of the feature cells, row-major.

    Args:
        image_size_px: (height, width) of the original image, pixels.
        grid_size: (rows, columns) of the feature grid.

    Returns:
        (rows * columns, 2) float64 pixel coordinates (u, v) in the original image.

    Raises:
        ValueError: on a non-positive size.
    """
    h, w = (int(s) for s in image_size_px)
    gh, gw = (int(s) for s in grid_size)
    if min(h, w, gh, gw) <= 0:
        raise ValueError(f"sizes must be positive, got image {image_size_px}, grid {grid_size}")
    # The learned matcher's own convention, so training and the node agree on every pixel.
    return token_centers_px((gh, gw), (gh * PATCH_SIZE_PX, gw * PATCH_SIZE_PX), (h, w))


@dataclass(frozen=True)
class LiftedCells:
    """Planar points of the ground feature cells.

    Attributes:
        points_m: (N, 2) float32, gravity-aligned body frame (x forward, y left), metres (or the
            depth's relative unit); 0 where invalid.
        valid: (N,) bool, True where depth was known, positive and within the max range.
    """

    points_m: npt.NDArray[np.float32]
    valid: BoolArray


def lift_cells(
    camera: CameraModel,
    gravity_from_camera: FloatArray,
    pixels_px: FloatArray,
    depth: FloatArray,
    max_depth_m: float,
    min_depth_m: float = 0.5,
) -> LiftedCells:
    """Lift ground pixels with depth into planar body-frame points (the node's lifting).

    Uses :func:`cvgl_ros.core.lifting.lift_pixels`, so training sees exactly the points the
    node's pose solver sees.

    Args:
        camera: the ground camera model (z-depth for pinhole, range for panoramas).
        gravity_from_camera: (3, 3) float64 rotation, optical -> gravity-aligned body (FLU).
        pixels_px: (N, 2) float64 pixels (u, v).
        depth: (N,) float64 depth per pixel; NaN where unknown.
        max_depth_m: drop points farther than this (horizontal range, metres).
        min_depth_m: drop points closer than this (the vehicle itself, lens dirt).

    Returns:
        The lifted points (0 where invalid) and their validity, in input order.
    """
    cfg = LiftingConfig(max_depth_m=max_depth_m, min_depth_m=min_depth_m)
    lifted = lift_pixels(pixels_px, depth, camera, gravity_from_camera, cfg)
    n = int(np.asarray(pixels_px).shape[0])
    points = np.zeros((n, 2), dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    points[lifted.index] = lifted.points_g
    valid[lifted.index] = True
    return LiftedCells(points_m=points, valid=valid)


def aerial_cell_points_m(patch: AerialPatch, grid_size: tuple[int, int]) -> FloatArray:
    """(east, north) offsets of the aerial feature cells from the patch centre.

    Args:
        patch: the north-up aerial patch.
        grid_size: (rows, columns) of the aerial feature grid.

    Returns:
        (rows * columns, 2) float32, metres.
    """
    h, w = patch.image.shape[:2]
    return patch.pixel_to_en(cell_centers_px((h, w), grid_size)).astype(np.float32)


def aerial_cell_valid(patch: AerialPatch, grid_size: tuple[int, int]) -> BoolArray:
    """(rows * columns,) bool: True where the aerial cell centre has imagery."""
    h, w = patch.image.shape[:2]
    px = cell_centers_px((h, w), grid_size)
    u = np.clip(np.rint(px[:, 0]).astype(np.int64), 0, w - 1)
    v = np.clip(np.rint(px[:, 1]).astype(np.int64), 0, h - 1)
    return np.asarray(patch.valid_mask[v, u], dtype=bool)
