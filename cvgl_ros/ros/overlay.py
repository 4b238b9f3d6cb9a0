"""The ``~/debug/overlay`` picture: the aerial patch with matches, lifted layout and pose.

Drawn on the aerial patch (north up): matched aerial points (green inliers, red outliers), the
lifted ground points moved by the estimated similarity (blue), the GNSS prior with its 2-sigma
ellipse (yellow), the estimated base_link position with its heading and 3-sigma ellipse (magenta),
and the ground image as a thumbnail in the top-left corner.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.types import AerialPatch, FloatArray, GnssPrior, PoseEstimate, UInt8Array

_GREEN = (40, 220, 40)
_RED = (230, 40, 40)
_BLUE = (60, 140, 255)
_YELLOW = (255, 220, 0)
_MAGENTA = (255, 0, 255)


def _ellipse(
    canvas: UInt8Array,
    center_px: FloatArray,
    cov_en_m2: FloatArray,
    patch: AerialPatch,
    n_sigma: float,
    color: tuple[int, int, int],
) -> None:
    cov = np.asarray(cov_en_m2, dtype=np.float64)[:2, :2]
    if not np.all(np.isfinite(cov)):
        return
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    w = np.maximum(w, 0.0)
    angles = np.linspace(0.0, 2.0 * math.pi, 48)
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    pts_en = (circle * (n_sigma * np.sqrt(w))) @ v.T
    pts_px = pts_en / patch.m_per_px * np.array([1.0, -1.0]) + center_px
    if not np.all(np.isfinite(pts_px)) or np.max(np.abs(pts_px)) > 1e5:
        return
    cv2.polylines(canvas, [np.round(pts_px).astype(np.int32)], True, color, 1, cv2.LINE_AA)


def render_overlay(
    estimate: PoseEstimate,
    image: UInt8Array | None,
    prior: GnssPrior | None,
    max_size_px: int = 640,
) -> UInt8Array | None:
    """Draw the overlay of one localization attempt.

    Args:
        estimate: the result, with ``debug`` (``keep_debug``) holding the patch.
        image: (H, W, 3) uint8 RGB ground image, for the thumbnail.
        prior: the GNSS prior used.
        max_size_px: the overlay's longer side, pixels.

    Returns:
        (h, w, 3) uint8 RGB, or None when the attempt produced no patch to draw on.
    """
    dbg = getattr(estimate, "debug", None)
    patch = getattr(dbg, "patch", None)
    if dbg is None or patch is None:
        return None
    canvas = np.ascontiguousarray(patch.image.copy())
    corr = dbg.correspondences
    if corr is not None and len(corr) > 0:
        aerial = np.round(corr.aerial_px).astype(np.int32)
        inlier_pos: set[int] = set()
        if dbg.lifted_index is not None and dbg.inlier_mask is not None:
            inlier_pos = {int(i) for i in np.asarray(dbg.lifted_index)[dbg.inlier_mask]}
        for k, (u, v) in enumerate(aerial):
            cv2.circle(canvas, (int(u), int(v)), 2, _GREEN if k in inlier_pos else _RED, -1)
    if dbg.points_g is not None and dbg.patch_from_camera is not None:
        h = np.asarray(dbg.patch_from_camera, dtype=np.float64)
        pts = np.asarray(dbg.points_g, dtype=np.float64)
        moved_en = pts @ h[:2, :2].T + h[:2, 2]
        for u, v in np.round(patch.en_to_pixel(moved_en)).astype(np.int32):
            cv2.drawMarker(canvas, (int(u), int(v)), _BLUE, cv2.MARKER_CROSS, 4, 1)
    patch_enu = LocalEnu(patch.center_lat_deg, patch.center_lon_deg)
    if prior is not None:
        pe, pn = patch_enu.to_en(prior.lat_deg, prior.lon_deg)
        prior_px = patch.en_to_pixel(np.array([[float(pe), float(pn)]]))[0]
        _ellipse(canvas, prior_px, prior.cov_en_m2, patch, 2.0, _YELLOW)
        cv2.circle(canvas, tuple(np.round(prior_px).astype(int)), 4, _YELLOW, 1, cv2.LINE_AA)
    if math.isfinite(estimate.lat_deg) and math.isfinite(estimate.yaw_enu_rad):
        ee, en = patch_enu.to_en(estimate.lat_deg, estimate.lon_deg)
        cam_px = patch.en_to_pixel(np.array([[float(ee), float(en)]]))[0]
        tip_en = np.array([[float(ee), float(en)]]) + 20.0 * np.array(
            [[math.cos(estimate.yaw_enu_rad), math.sin(estimate.yaw_enu_rad)]]
        )
        tip_px = patch.en_to_pixel(tip_en)[0]
        color = _MAGENTA if estimate.ok else _RED
        cv2.circle(canvas, tuple(np.round(cam_px).astype(int)), 5, color, 2, cv2.LINE_AA)
        cv2.arrowedLine(
            canvas,
            tuple(np.round(cam_px).astype(int)),
            tuple(np.round(tip_px).astype(int)),
            color,
            2,
            cv2.LINE_AA,
        )
        _ellipse(canvas, cam_px, estimate.cov_en_yaw, patch, 3.0, color)
    if image is not None and image.ndim == 3:
        side = max(1, canvas.shape[1] // 4)
        scale = side / max(image.shape[:2])
        thumb = cv2.resize(
            image, (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale)))
        )
        th, tw = thumb.shape[:2]
        canvas[:th, :tw] = thumb
        cv2.rectangle(canvas, (0, 0), (tw - 1, th - 1), (255, 255, 255), 1)
    text = f"{estimate.status.value} inl {estimate.inliers}/{estimate.num_matches}"
    cv2.putText(
        canvas,
        text,
        (4, canvas.shape[0] - 6),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    longest = max(canvas.shape[:2])
    if longest > max_size_px:
        f = max_size_px / longest
        canvas = cv2.resize(
            canvas,
            (int(canvas.shape[1] * f), int(canvas.shape[0] * f)),
            interpolation=cv2.INTER_AREA,
        )
    return np.ascontiguousarray(canvas, dtype=np.uint8)
