"""Publication gates: a bad pose with a tight covariance is the worst output, so refuse it.

Each gate that fails adds a reason; the status is the first failing gate in the order
``too_few_inliers`` (count, then significance), ``low_inlier_ratio``, ``scale_out_of_bounds``,
``outside_prior``, ``degenerate`` (no finite covariance).
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
        prior_distance_n_sigma: Mahalanobis distance of the position from the GNSS prior.
    """

    status: PoseStatus
    reasons: tuple[str, ...]
    prior_distance_n_sigma: float

    @property
    def ok(self) -> bool:
        """True when every gate passed."""
        return self.status is PoseStatus.OK


def log10_nfa(
    num_matches: int, num_inliers: int, inlier_probability: float, sample_size: int = 2
) -> float:
    """A-contrario significance of a RANSAC model: log10 of its number of false alarms.

    Under the null hypothesis that the ``num_matches`` correspondences are random (each one
    lands within the inlier threshold of a given model with probability
    ``inlier_probability``, independently), the expected number of models, among all models
    from minimal samples, that gather ``num_inliers`` inliers is at most (Moisan & Stival,
    ORSA, 2004)::

        NFA = (n - m) * C(n, k) * C(k, m) * p^(k - m)

    with ``m = sample_size`` (the sample's own points fit by construction). A model whose
    NFA is far below 1 is very unlikely to be a chance alignment of wrong matches; the
    threshold adapts the required inlier count to the number of matches and to how easy a
    chance inlier is (threshold area over the searched area), unlike a fixed count.

    Args:
        num_matches: correspondences offered to RANSAC (n).
        num_inliers: inliers of the model (k).
        inlier_probability: probability that one random correspondence is an inlier of a
            fixed model (inlier disc area / searched area), in (0, 1].
        sample_size: minimal sample size (2 for the 2-D similarity).

    Returns:
        log10(NFA); +inf when ``num_inliers <= sample_size`` (no evidence beyond the sample).
    """
    n, k, m = int(num_matches), int(num_inliers), int(sample_size)
    p = float(inlier_probability)
    if k <= m or n <= m or not 0.0 < p <= 1.0:
        return math.inf
    k = min(k, n)

    def log10_choose(a: int, b: int) -> float:
        return (math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)) / math.log(10)

    return math.log10(n - m) + log10_choose(n, k) + log10_choose(k, m) + (k - m) * math.log10(p)


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
    log10_nfa: float | None = None,
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
        log10_nfa: significance of the inlier set (:func:`log10_nfa`), None to skip that gate.

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
    if log10_nfa is not None and not log10_nfa <= config.max_log10_nfa:
        reasons.append(
            (
                PoseStatus.TOO_FEW_INLIERS,
                f"{num_inliers} inliers are not significant: log10 NFA {log10_nfa:.1f} > "
                f"max_log10_nfa {config.max_log10_nfa}",
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
    if not dist <= config.prior_gate_n_sigma:
        reasons.append(
            (
                PoseStatus.OUTSIDE_PRIOR,
                f"position {dist:.2f} sigma from the GNSS prior > prior_gate_n_sigma "
                f"{config.prior_gate_n_sigma}",
            )
        )
    if yaw_prior_rad is not None and yaw_rad is not None:
        sigma_prior = 0.0 if yaw_prior_sigma_rad is None else float(yaw_prior_sigma_rad)
        sigma = math.sqrt(sigma_prior**2 + max(float(cov[2, 2]), 0.0))
        dyaw = abs(float(wrap_angle_rad(yaw_rad - yaw_prior_rad)))
        if sigma <= 0.0 or not dyaw <= config.prior_gate_n_sigma * sigma:
            reasons.append(
                (
                    PoseStatus.OUTSIDE_PRIOR,
                    f"yaw {math.degrees(dyaw):.1f} deg from the yaw prior > "
                    f"{config.prior_gate_n_sigma} sigma ({math.degrees(sigma):.1f} deg)",
                )
            )
    if not cov_ok:
        reasons.append((PoseStatus.DEGENERATE, "pose covariance not available (too few inliers)"))
    if not reasons:
        return GateResult(PoseStatus.OK, (), dist)
    return GateResult(reasons[0][0], tuple(r for _, r in reasons), dist)
