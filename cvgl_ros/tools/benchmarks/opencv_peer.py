"""A simple OpenCV peer: what an afternoon's script does with the same bag and orthophoto.

Per image: crop the orthophoto at its native resolution around the GNSS fix (``radius_m``), SIFT
on the full camera image and on the crop, Lowe's ratio test, ``cv2.estimateAffinePartial2D``
(RANSAC similarity) and, with at least ``min_inliers`` inliers, the camera position = the
principal point mapped into the crop (a nadir camera), heading = the image's up direction.
No covariance, no gating beyond the inlier count, no use of altitude or heading.

It reads the same bags as ``cvgl-ros replay`` and writes the same ``poses.csv``/``prior.csv``
(covariance columns NaN), so ``cvgl-ros eval`` scores both alike. Used by the ``realframes``
benchmark suite and the real-data test as the baseline to beat.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.core.geodesy import wrap_angle_rad
from cvgl_ros.core.types import GnssPrior, PoseEstimate, PoseStatus


@dataclass(frozen=True)
class PeerConfig:
    """The peer's few settings.

    Attributes:
        radius_m: half-size of the orthophoto crop around the fix, metres.
        ratio: Lowe ratio-test threshold.
        ransac_threshold_px: RANSAC reprojection threshold, orthophoto pixels.
        min_inliers: fewer inliers -> no pose.
    """

    radius_m: float = 60.0
    ratio: float = 0.8
    ransac_threshold_px: float = 3.0
    min_inliers: int = 8


class _Ortho:
    """The orthophoto as the script reads it: rasterio window + its CRS."""

    def __init__(self, path: str | Path) -> None:
        import rasterio
        from pyproj import Transformer

        self._ds = rasterio.open(path)
        self.transform = self._ds.transform
        self.to_crs = Transformer.from_crs("EPSG:4326", self._ds.crs, always_xy=True)
        self.to_lonlat = Transformer.from_crs(self._ds.crs, "EPSG:4326", always_xy=True)
        self.m_per_px = float(abs(self.transform.a))

    def crop(self, lat: float, lon: float, radius_m: float) -> tuple[Any, Any, int, int]:
        """(RGB crop, valid mask, column offset, row offset) around a WGS84 point."""
        from rasterio.windows import Window

        x, y = self.to_crs.transform(lon, lat)
        inv = ~self.transform
        col, row = inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f
        r = math.ceil(radius_m / self.m_per_px)
        c0, r0 = int(col) - r, int(row) - r
        with warnings.catch_warnings():  # rasterio's own Affine '*' deprecation notice
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            data = self._ds.read(window=Window(c0, r0, 2 * r, 2 * r), boundless=True, fill_value=0)
        rgb = (
            np.moveaxis(data[:3], 0, -1)
            if data.shape[0] >= 3
            else np.repeat(np.moveaxis(data[:1], 0, -1), 3, axis=2)
        )
        mask = data[3] > 0 if data.shape[0] >= 4 else np.any(data > 0, axis=0)
        return np.ascontiguousarray(rgb.astype(np.uint8)), mask, c0, r0

    def pixel_to_lonlat(self, col: float, row: float) -> tuple[float, float]:
        t = self.transform
        x, y = t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f
        lon, lat = self.to_lonlat.transform(x, y)
        return float(lon), float(lat)

    def close(self) -> None:
        self._ds.close()


def peer_pose(
    image_rgb: Any,
    camera: Any,
    prior: GnssPrior,
    ortho: _Ortho,
    config: PeerConfig,
    stamp_s: float,
) -> PoseEstimate:
    """The peer's pose for one image (covariance NaN)."""
    import cv2

    crop, mask, c0, r0 = ortho.crop(prior.lat_deg, prior.lon_deg, config.radius_m)
    sift = cv2.SIFT_create()
    g1 = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    g2 = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    k1, d1 = sift.detectAndCompute(g1, None)
    k2, d2 = sift.detectAndCompute(g2, mask.astype(np.uint8) * 255)
    if d1 is None or d2 is None or len(k2) < 2:
        return PoseEstimate(PoseStatus.TOO_FEW_MATCHES, ("no keypoints",), stamp_s=stamp_s)
    pairs = cv2.BFMatcher().knnMatch(d1, d2, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < config.ratio * m[1].distance]
    if len(good) < config.min_inliers:
        return PoseEstimate(PoseStatus.TOO_FEW_MATCHES, (f"{len(good)} matches",), stamp_s=stamp_s)
    p1 = np.float32([k1[m.queryIdx].pt for m in good])
    p2 = np.float32([k2[m.trainIdx].pt for m in good])
    affine, inliers = cv2.estimateAffinePartial2D(
        p1, p2, method=cv2.RANSAC, ransacReprojThreshold=config.ransac_threshold_px
    )
    n_inl = 0 if inliers is None else int(inliers.sum())
    if affine is None or n_inl < config.min_inliers:
        return PoseEstimate(
            PoseStatus.TOO_FEW_INLIERS,
            (f"{n_inl} inliers",),
            inliers=n_inl,
            num_matches=len(good),
            stamp_s=stamp_s,
        )
    centre = affine @ np.array([camera.cx_px, camera.cy_px, 1.0])
    # OpenCV keypoints: pixel centres at integers; the raster transform: corners at integers.
    lon, lat = ortho.pixel_to_lonlat(c0 + centre[0] + 0.5, r0 + centre[1] + 0.5)
    up = affine[:, :2] @ np.array([0.0, -1.0])  # image up in crop pixels (v down = south)
    yaw = float(wrap_angle_rad(math.atan2(-up[1], up[0])))
    return PoseEstimate(
        PoseStatus.OK,
        lat_deg=lat,
        lon_deg=lon,
        yaw_enu_rad=yaw,
        inliers=n_inl,
        inlier_ratio=n_inl / len(good),
        num_matches=len(good),
        stamp_s=stamp_s,
    )


def run_peer(
    bag: str | Path, ortho_path: str | Path, out_dir: str | Path, config: PeerConfig | None = None
) -> dict[str, Any]:
    """Run the peer over a bag; writes ``poses.csv``, ``prior.csv``, ``summary.json``.

    The prior of each image is the fix buffer's (:class:`~cvgl_ros.tools.outputs.PriorTracker`),
    as in ``cvgl-ros replay``.

    Returns:
        The summary (status counts, availability, latency).
    """
    import time

    from cvgl_ros.ros import convert
    from cvgl_ros.ros.params import configs_from_params
    from cvgl_ros.tools.bags import BagTopics, header_stamp_ns, iter_bag
    from cvgl_ros.tools.outputs import FrameRecord, PriorTracker, write_outputs

    cfg = config or PeerConfig()
    tracker = PriorTracker(configs_from_params({"tiles.source": str(ortho_path)}))
    ortho = _Ortho(ortho_path)
    records: list[FrameRecord] = []
    camera = None
    try:
        for role, _t_ns, msg in iter_bag(bag, BagTopics()):
            if role == "camera_info":
                camera = convert.camera_from_camera_info(msg)
            elif role == "fix":
                tracker.on_fix(msg)
            elif role == "image" and camera is not None:
                stamp_ns = header_stamp_ns(msg)
                prior, prior_status = tracker.prior_at(stamp_ns * 1e-9)
                t0 = time.perf_counter()
                if prior is None:
                    est = PoseEstimate(PoseStatus.NO_FIX, (prior_status,), stamp_s=stamp_ns * 1e-9)
                else:
                    image = convert.any_image_to_rgb(msg)
                    est = peer_pose(image, camera, prior, ortho, cfg, stamp_ns * 1e-9)
                dt = time.perf_counter() - t0
                records.append(FrameRecord(stamp_ns, est, prior, prior_status, dt))
    finally:
        ortho.close()
    return write_outputs(Path(out_dir), records, {"mode": "opencv_peer", "config": vars(cfg)})
