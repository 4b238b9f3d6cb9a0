"""Shared value types of the pipeline: inputs, correspondences, aerial patches and results.

Conventions (see ``docs/CONVENTIONS.md``): world = ENU, yaw ENU (0 = east, counter-clockwise,
radians); every physical quantity carries its unit in its name; arrays are documented with
shape, dtype, unit and frame.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from cvgl_ros.core.view import ViewPlan

FloatArray = npt.NDArray[np.float64]
UInt8Array = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


class PoseStatus(str, enum.Enum):
    """Outcome of one localization attempt; ``OK`` is the only publishable status."""

    OK = "ok"
    NO_FIX = "no_fix"
    STALE_FIX = "stale_fix"
    NO_IMAGERY = "no_imagery"
    BAD_IMAGE = "bad_image"
    TOO_FEW_MATCHES = "too_few_matches"
    TOO_FEW_POINTS = "too_few_points"
    DEGENERATE = "degenerate"
    TOO_FEW_INLIERS = "too_few_inliers"
    LOW_INLIER_RATIO = "low_inlier_ratio"
    SCALE_OUT_OF_BOUNDS = "scale_out_of_bounds"
    OUTSIDE_PRIOR = "outside_prior"
    ERROR = "error"


@dataclass(frozen=True)
class GnssPrior:
    """A coarse GNSS fix used to choose the aerial patch and to gate the pose.

    Attributes:
        lat_deg: WGS84 latitude, degrees.
        lon_deg: WGS84 longitude, degrees.
        cov_en_m2: (2, 2) float64, m^2, covariance of (east, north) in the local ENU frame.
        stamp_s: time of the fix, seconds (same clock as the image stamps).
        alt_m: WGS84 ellipsoidal altitude, metres, when known.
        alt_var_m2: variance of ``alt_m``, m^2, when the receiver reports one.
    """

    lat_deg: float
    lon_deg: float
    cov_en_m2: FloatArray
    stamp_s: float = 0.0
    alt_m: float | None = None
    alt_var_m2: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lat_deg) and math.isfinite(self.lon_deg)):
            raise ValueError(f"GNSS fix must be finite, got ({self.lat_deg}, {self.lon_deg})")
        if not -90.0 <= self.lat_deg <= 90.0 or not -180.0 <= self.lon_deg <= 180.0:
            raise ValueError(f"GNSS fix out of range: ({self.lat_deg}, {self.lon_deg}) degrees")
        cov = np.asarray(self.cov_en_m2, dtype=np.float64)
        if cov.shape != (2, 2) or not np.all(np.isfinite(cov)):
            raise ValueError(f"cov_en_m2 must be a finite (2, 2) array, got {cov!r}")
        object.__setattr__(self, "cov_en_m2", cov)
        if self.alt_m is not None and not math.isfinite(self.alt_m):
            raise ValueError(f"alt_m must be finite or None, got {self.alt_m}")
        if self.alt_var_m2 is not None and not (
            math.isfinite(self.alt_var_m2) and self.alt_var_m2 > 0.0
        ):
            raise ValueError(f"alt_var_m2 must be positive or None, got {self.alt_var_m2}")

    @property
    def largest_sigma_m(self) -> float:
        """Horizontal standard deviation along the covariance's major axis, metres."""
        cov = 0.5 * (self.cov_en_m2 + self.cov_en_m2.T)
        return math.sqrt(max(float(np.linalg.eigvalsh(cov)[-1]), 0.0))


@dataclass(frozen=True)
class Correspondences:
    """Putative matches between the ground image and the aerial patch.

    Attributes:
        ground_px: (N, 2) float64, pixels (u right, v down) in the ground image.
        aerial_px: (N, 2) float64, pixels (u right, v down) in the aerial patch.
        weights: (N,) float64 in [0, 1], match probability or normalised score.
    """

    ground_px: FloatArray
    aerial_px: FloatArray
    weights: FloatArray

    def __post_init__(self) -> None:
        g = np.asarray(self.ground_px, dtype=np.float64).reshape(-1, 2)
        a = np.asarray(self.aerial_px, dtype=np.float64).reshape(-1, 2)
        w = np.asarray(self.weights, dtype=np.float64).reshape(-1)
        if not len(g) == len(a) == len(w):
            raise ValueError(
                f"correspondence arrays disagree in length: {len(g)}, {len(a)}, {len(w)}"
            )
        object.__setattr__(self, "ground_px", g)
        object.__setattr__(self, "aerial_px", a)
        object.__setattr__(self, "weights", w)

    def __len__(self) -> int:
        return int(self.ground_px.shape[0])


@dataclass(frozen=True)
class AerialPatch:
    """A north-up aerial image with a metric georeference, centred on a WGS84 point.

    Pixel (u, v) has its centre at (u + 0.5, v + 0.5) in continuous image coordinates; the
    patch centre is at continuous coordinates (W / 2, H / 2). East grows with u, north
    decreases with v.

    Attributes:
        image: (H, W, 3) uint8 RGB, north-up.
        m_per_px: ground sampling distance, metres per pixel (same in both axes).
        center_lat_deg: WGS84 latitude of the patch centre, degrees.
        center_lon_deg: WGS84 longitude of the patch centre, degrees.
        valid_mask: (H, W) bool, True where imagery exists.
        source_id: identifier of the tile source the patch came from.
    """

    image: UInt8Array
    m_per_px: float
    center_lat_deg: float
    center_lon_deg: float
    valid_mask: BoolArray
    source_id: str = ""

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"patch image must be (H, W, 3) uint8, got {self.image.shape}")
        if self.valid_mask.shape != self.image.shape[:2]:
            raise ValueError("valid_mask must be (H, W) like the image")
        if not (math.isfinite(self.m_per_px) and self.m_per_px > 0.0):
            raise ValueError(f"m_per_px must be positive, got {self.m_per_px}")

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    def pixel_to_en(self, pixels_px: FloatArray) -> FloatArray:
        """Aerial pixels -> metric offsets from the patch centre.

        Args:
            pixels_px: (N, 2) float64, pixel coordinates (u, v) of pixel centres.

        Returns:
            (N, 2) float64, metres, (east, north) offsets from the patch centre.
        """
        p = np.asarray(pixels_px, dtype=np.float64).reshape(-1, 2)
        w, h = self.size_px
        east = (p[:, 0] + 0.5 - 0.5 * w) * self.m_per_px
        north = (0.5 * h - (p[:, 1] + 0.5)) * self.m_per_px
        return np.stack([east, north], axis=1)

    def en_to_pixel(self, en_m: FloatArray) -> FloatArray:
        """Inverse of :meth:`pixel_to_en`: (N, 2) metres (east, north) -> (N, 2) pixels (u, v)."""
        e = np.asarray(en_m, dtype=np.float64).reshape(-1, 2)
        w, h = self.size_px
        u = e[:, 0] / self.m_per_px + 0.5 * w - 0.5
        v = 0.5 * h - e[:, 1] / self.m_per_px - 0.5
        return np.stack([u, v], axis=1)


@dataclass(frozen=True)
class LocalizationDebug:
    """Intermediate data of one localization attempt, for overlays and visualisation.

    Arrays are indexed like ``correspondences`` unless stated otherwise; fields are None when
    the attempt stopped before the stage that produces them.

    Attributes:
        patch: the aerial patch used.
        correspondences: the matcher's output.
        depth: (N,) float64, depth of each ground pixel (camera convention; NaN = unknown).
        lifted_index: (M,) int64, indices of the correspondences that survived lifting.
        points_g: (M, 2) float64, planar ground points (x forward, y left), gravity-aligned body
            frame, depth units.
        aerial_en_m: (M, 2) float64, metres, (east, north) of the matched aerial pixels in the
            patch frame.
        inlier_mask: (M,) bool, RANSAC inliers among the lifted points.
        residuals_m: (M,) float64, metres, residual of every lifted point under the model.
        patch_from_camera: (3, 3) float64 homogeneous 2-D similarity (scale * R, t) mapping
            planar ground points into the patch frame; its translation is the camera position
            (east, north) in metres relative to the patch centre.
        ransac_iterations: hypotheses RANSAC drew.
        sigma_m: residual standard deviation of the inliers, metres.
        covariance_inflation: factor applied to the least-squares covariance.
        view_plan: the adaptive matching plan (matching GSD, patch, camera view), None when
            the fixed patch was used.
        camera_height_m: camera height above the ground used, metres (NaN: unknown).
        scale_bounds: (min, max) similarity scale allowed for this frame, None = the
            configured gates.
        log10_nfa: significance of the inlier set (log10 number of false alarms; NaN: not
            computed).
    """

    patch: AerialPatch | None = None
    correspondences: Correspondences | None = None
    depth: FloatArray | None = None
    lifted_index: IntArray | None = None
    points_g: FloatArray | None = None
    aerial_en_m: FloatArray | None = None
    inlier_mask: BoolArray | None = None
    residuals_m: FloatArray | None = None
    patch_from_camera: FloatArray | None = None
    ransac_iterations: int = 0
    sigma_m: float = math.nan
    covariance_inflation: float = math.nan
    view_plan: ViewPlan | None = None
    camera_height_m: float = math.nan
    scale_bounds: tuple[float, float] | None = None
    log10_nfa: float = math.nan


@dataclass(frozen=True)
class PoseEstimate:
    """Result of one localization attempt.

    When ``status`` is not ``OK`` the pose fields may still hold the best (rejected) hypothesis
    for diagnostics, or be NaN when no hypothesis existed; consumers must check ``status``.

    Attributes:
        status: outcome; only ``PoseStatus.OK`` may be published.
        reasons: human-readable reasons for a non-OK status (empty when OK).
        lat_deg, lon_deg: WGS84 position of the camera, degrees.
        east_m, north_m: camera position in the map ENU frame, metres.
        yaw_enu_rad: heading of the body +x axis in ENU, radians, in (-pi, pi].
        cov_en_yaw: (3, 3) float64 covariance of (east m, north m, yaw rad).
        scale: similarity scale of the fit (1 = metric depth was exact).
        inliers: number of RANSAC inliers.
        inlier_ratio: inliers / correspondences used.
        num_matches: correspondences offered to RANSAC.
        timings_s: seconds spent per stage (``patch``, ``match``, ``depth``, ``lift``, ``ransac``,
            ``total``).
        stamp_s: stamp of the ground image, seconds.
        debug: intermediate data for overlays and diagnostics (None unless kept).
    """

    status: PoseStatus
    reasons: tuple[str, ...] = ()
    lat_deg: float = math.nan
    lon_deg: float = math.nan
    east_m: float = math.nan
    north_m: float = math.nan
    yaw_enu_rad: float = math.nan
    cov_en_yaw: FloatArray = field(default_factory=lambda: np.full((3, 3), np.nan))
    scale: float = math.nan
    inliers: int = 0
    inlier_ratio: float = 0.0
    num_matches: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    stamp_s: float = 0.0
    debug: LocalizationDebug | None = None

    @property
    def ok(self) -> bool:
        """True when the pose may be published."""
        return self.status is PoseStatus.OK
