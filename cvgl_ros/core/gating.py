"""Publication gates: a bad pose with a tight covariance is the worst output, so refuse it.

Each gate that fails adds a reason; the status is the first failing gate in the order
``too_few_inliers``, ``low_inlier_ratio``, ``scale_out_of_bounds``, ``outside_prior``,
``degenerate`` (no finite covariance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.core.config import GatingConfig
from cvgl_ros.core.geodesy import wrap_angle_rad
from cvgl_ros.core.types import FloatArray, PoseStatus


@dataclass(frozen=True)
class GateResult:
    """Outcome of :func:`gate_pose`.

    Attributes:
        status: ``OK`` or the first failing gate.
        reasons: one human-readable reason per failing gate (empty when OK).
        prior_distance_sigma: Mahalanobis distance of the position from the GNSS prior.
    """

    status: PoseStatus
    reasons: tuple[str, ...]
    prior_distance_sigma: float

    @property
    def ok(self) -> bool:
        """True when every gate passed."""
        return self.status is PoseStatus.OK


def _psd(c: FloatArray) -> FloatArray:
    sym = 0.5 * (c + c.T)
    vals, vecs = np.linalg.eigh(sym)
    return np.asarray((vecs * np.maximum(vals, 0.0)) @ vecs.T, dtype=np.float64)


def gate_pose(
    *,
    num_inliers: int,
    inlier_ratio: float,
    scale: float,
    position_en_m: FloatArray,
    cov_en_yaw: FloatArray,
    prior_en_m: FloatArray,
    prior_cov_en_m2: FloatArray,
    config: GatingConfig,
    yaw_rad: float | None = None,
    yaw_prior_rad: float | None = None,
    yaw_prior_sigma_rad: float | None = None,
) -> GateResult:
    """Apply every gate.

    Args:
        num_inliers: RANSAC inliers.
        inlier_ratio: inliers / correspondences.
        scale: similarity scale.
        position_en_m: (2,) float64, camera (east, north), metres, same frame as the prior.
        cov_en_yaw: (3, 3) float64 pose covariance.
        prior_en_m: (2,) float64, GNSS prior (east, north), metres.
        prior_cov_en_m2: (2, 2) float64, GNSS covariance, m².
        config: thresholds.
        yaw_rad: estimated yaw (ENU, radians), for the yaw gate.
        yaw_prior_rad: yaw prior (ENU, radians), or None for no yaw gate.
        yaw_prior_sigma_rad: standard deviation of the yaw prior, radians.

    Returns:
        Status, reasons and the prior distance in sigmas.
    """
    reasons: list[tuple[PoseStatus, str]] = []
    if num_inliers < config.min_inliers:
        reasons.append(
            (
                PoseStatus.TOO_FEW_INLIERS,
                f"{num_inliers} inliers < min_inliers {config.min_inliers}",
            )
        )
    if not inlier_ratio >= config.min_inlier_ratio:
        reasons.append(
            (
                PoseStatus.LOW_INLIER_RATIO,
                f"inlier ratio {inlier_ratio:.3f} < min_inlier_ratio {config.min_inlier_ratio}",
            )
        )
    if not config.scale_min <= scale <= config.scale_max:
        reasons.append(
            (
                PoseStatus.SCALE_OUT_OF_BOUNDS,
                f"scale {scale:.4g} outside [{config.scale_min}, {config.scale_max}]",
            )
        )
    cov = np.asarray(cov_en_yaw, dtype=np.float64)
    cov_ok = cov.shape == (3, 3) and bool(np.all(np.isfinite(cov)))
    if not cov_ok:
        cov = np.zeros((3, 3))
    d = np.asarray(position_en_m, dtype=np.float64) - np.asarray(prior_en_m, dtype=np.float64)
    prior_cov = np.asarray(prior_cov_en_m2, dtype=np.float64)
    if not np.all(np.isfinite(prior_cov)):
        prior_cov = np.full((2, 2), np.inf)
        d = np.full(2, np.nan)
    combined = _psd(prior_cov) + _psd(cov[:2, :2])
    dist = math.inf
    if np.all(np.isfinite(d)) and np.all(np.isfinite(combined)):
        try:
            dist = math.sqrt(max(float(d @ np.linalg.solve(combined, d)), 0.0))
        except np.linalg.LinAlgError:
            dist = math.inf
    if not dist <= config.prior_gate_sigma:
        reasons.append(
            (
                PoseStatus.OUTSIDE_PRIOR,
                f"position {dist:.2f} sigma from the GNSS prior > prior_gate_sigma "
                f"{config.prior_gate_sigma}",
            )
        )
    if yaw_prior_rad is not None and yaw_rad is not None:
        sigma_prior = 0.0 if yaw_prior_sigma_rad is None else float(yaw_prior_sigma_rad)
        sigma = math.sqrt(sigma_prior**2 + max(float(cov[2, 2]), 0.0))
        dyaw = abs(float(wrap_angle_rad(yaw_rad - yaw_prior_rad)))
        if sigma <= 0.0 or not dyaw <= config.prior_gate_sigma * sigma:
            reasons.append(
                (
                    PoseStatus.OUTSIDE_PRIOR,
                    f"yaw {math.degrees(dyaw):.1f} deg from the yaw prior > "
                    f"{config.prior_gate_sigma} sigma ({math.degrees(sigma):.1f} deg)",
                )
            )
    if not cov_ok:
        reasons.append((PoseStatus.DEGENERATE, "pose covariance not available (too few inliers)"))
    if not reasons:
        return GateResult(PoseStatus.OK, (), dist)
    return GateResult(reasons[0][0], tuple(r for _, r in reasons), dist)
