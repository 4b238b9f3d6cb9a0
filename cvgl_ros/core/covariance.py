"""Covariance of the camera pose (east, north, yaw) from the RANSAC inliers.

Model: ``a_i = s R(yaw) g_i + t + e_i`` with isotropic noise ``e_i ~ N(0, σ² I)`` in the aerial
frame. The parameters are ``θ = (t_e, t_n, yaw, s)``; the Jacobian of the prediction of point i is
``[I₂, J q_i, q_i / s]`` with ``q_i = s R g_i`` and ``J`` the 90° rotation. The weighted
least-squares estimate (weights = match probabilities) has the sandwich covariance
``σ² H⁻¹ M H⁻¹`` with ``H = Σ w_i J_iᵀJ_i`` and ``M = Σ w_i² J_iᵀJ_i``; ``σ²`` comes from the
inlier residuals (``Σ |r_i|² / (2n - 4)``). The (t_e, t_n, yaw) block is the marginal covariance
of the camera pose (``t`` is the camera position because ``g`` is camera-centred).

The raw covariance ignores what RANSAC adds (threshold truncation of the residuals, outliers that
slip under the threshold, selection of the best hypothesis), so it is inflated by
``base_inflation * (1 + count_inflation / sqrt(n)) * (1 + ratio_inflation * (1 - ratio))``.

The least-squares covariance shrinks as ``1 / n``: it assumes independent residuals. Errors that
every inlier shares do not average down and are invisible in the residuals, so four physical
terms are added to it (all in :class:`~cvgl_ros.core.config.CovarianceConfig`):

* **aerial keypoint floor** ``aerial_sigma_px`` (aerial pixels) times the patch resolution
  ``m_per_px``: the error a keypoint detector / matcher / resampling chain makes *consistently*
  on a patch (sub-pixel detector bias, pixel-centre conventions, interpolation), about 0.1-0.3
  px even for good detectors. It enters as the covariance of a fit whose points all carry this
  noise but count as one observation: ``(aerial_sigma_px * m_per_px)² · n_eff · H⁻¹MH⁻¹`` with
  ``n_eff = (Σw)² / Σw²`` -- for camera-centred (nadir) points a position sigma of exactly
  ``aerial_sigma_px * m_per_px`` and a yaw sigma of that over the footprint's radius; for
  points ahead of a forward camera the lever arm and the position/yaw correlation follow from
  the same Jacobian;
* **map georeferencing** ``map_georef_sigma_m`` on east and north: the orthophoto's absolute
  error, shared by every frame over the same imagery;
* **attitude** ``attitude_sigma_rad``: a roll/pitch error ``δ`` of ``gravity_from_camera``
  tilts every lifted ray by ``δ`` about a horizontal axis, which moves a lifted point ``p``
  horizontally by ``δ · |p_z|`` (depth that does not depend on the attitude) or, for
  ground-plane depth, by up to ``δ · |p|² / |p_z|`` (the ray meets the plane elsewhere); for a
  nadir camera both are about ``δ · range`` with the camera-to-ground range ``|p|`` in metres,
  nearly the same for every inlier, so the position moves by that much. It is added to east
  and north as ``(inlier_range_m · attitude_sigma_rad)²`` with ``inlier_range_m`` the median
  metric 3-D range of the inliers (``scale · |p|``), which the Localizer computes from the
  lifted points. For a forward camera with ground-plane depth a pitch error stretches far
  points much more than near ones (``δ · |p|² / |p_z|``), which the fitted scale only partly
  absorbs: there the term is a lower bound (raise ``attitude_sigma_rad`` or
  ``base_inflation``);
* **other floors** ``min_position_sigma_m`` (east, north) and ``min_yaw_sigma_rad`` (yaw),
  added in quadrature.

The two map terms apply when the caller gives the patch resolution ``aerial_m_per_px``, and
the attitude term when it gives ``inlier_range_m``, as the Localizer always does; points that
were not measured in a map image from a camera (simulated correspondences) get none of them.
The total is ``inflation * C_ls + C_floor``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.core.camera import as_points
from cvgl_ros.core.config import CovarianceConfig
from cvgl_ros.core.errors import DegenerateInputError, InvalidInputError
from cvgl_ros.core.procrustes import Similarity2D, check_weights
from cvgl_ros.core.types import FloatArray

# chi-square(3) 95 % quantile, for NEES checks.
CHI2_3DOF_95 = 7.814727903251178


@dataclass(frozen=True)
class PoseCovariance:
    """Covariance of (east, north, yaw) and its ingredients.

    Attributes:
        cov_en_yaw: (3, 3) float64, covariance of (east m, north m, yaw rad), symmetric PD.
        sigma_m: estimated per-axis residual standard deviation of an inlier, metres.
        inflation: factor applied to the least-squares covariance.
        raw_cov_en_yaw: (3, 3) float64, covariance before inflation and floors.
        floor_cov_en_yaw: (3, 3) float64, the part of ``cov_en_yaw`` that does not shrink with
            the inlier count (keypoint floor, georeferencing, attitude, minimum sigmas); None
            when not computed.
    """

    cov_en_yaw: FloatArray
    sigma_m: float
    inflation: float
    raw_cov_en_yaw: FloatArray
    floor_cov_en_yaw: FloatArray | None = None


def inflation_factor(num_inliers: int, inlier_ratio: float, config: CovarianceConfig) -> float:
    """The covariance inflation for ``num_inliers`` inliers at ``inlier_ratio``."""
    n = max(int(num_inliers), 1)
    ratio = min(max(float(inlier_ratio), 0.0), 1.0)
    return (
        config.base_inflation
        * (1.0 + config.count_inflation / math.sqrt(n))
        * (1.0 + config.ratio_inflation * (1.0 - ratio))
    )


def attitude_position_var_m2(inlier_range_m: float | None, config: CovarianceConfig) -> float:
    """Position variance per axis (east, north) from the roll/pitch error, m².

    Args:
        inlier_range_m: robust metric camera-to-point range of the inliers, metres, or None.
        config: holds ``attitude_sigma_rad``.

    Returns:
        ``(inlier_range_m * config.attitude_sigma_rad)²``, or 0 when ``inlier_range_m`` is None.
    """
    if inlier_range_m is None:
        return 0.0
    return (float(inlier_range_m) * config.attitude_sigma_rad) ** 2


def pose_covariance(
    source: FloatArray,
    target: FloatArray,
    model: Similarity2D,
    weights: FloatArray | None = None,
    inlier_ratio: float = 1.0,
    config: CovarianceConfig | None = None,
    aerial_m_per_px: float | None = None,
    inlier_range_m: float | None = None,
) -> PoseCovariance:
    """Covariance of the pose ``(t_e, t_n, yaw)`` of a similarity fitted to inliers.

    Args:
        source: (n, 2) float64, inlier planar ground points (gravity-aligned body frame).
        target: (n, 2) float64, inlier aerial points (east, north), metres, patch frame.
        model: the fitted similarity ``target ≈ s R source + t``.
        weights: (n,) float64 fit weights of the inliers, or None for equal weights.
        inlier_ratio: inliers / correspondences, for the inflation.
        config: calibration constants.
        aerial_m_per_px: resolution of the aerial patch the targets were measured in, metres
            per pixel, for the keypoint floor ``config.aerial_sigma_px``. None means the
            targets are not measurements in a map image (simulated or exact points): the map
            terms (keypoint floor and ``config.map_georef_sigma_m``) are then left out; the
            Localizer always passes its patch's resolution.
        inlier_range_m: robust (median) camera-to-point 3-D distance of the inliers, metres
            (the fitted scale times the lifted range), for the attitude term
            ``(inlier_range_m * config.attitude_sigma_rad)²`` on east and north. None leaves
            the attitude term out (points that were not lifted with a gravity estimate); the
            Localizer always passes it.

    Returns:
        The covariance (always finite, symmetric positive definite).

    Raises:
        InvalidInputError: malformed, empty, NaN or inf input, an ``aerial_m_per_px`` that
            is not a finite positive number or an ``inlier_range_m`` that is not a finite
            non-negative number.
        DegenerateInputError: fewer than 3 inliers or a singular normal matrix.
    """
    cfg = config if config is not None else CovarianceConfig()
    if aerial_m_per_px is not None:
        mpp = float(aerial_m_per_px)
        if not (math.isfinite(mpp) and mpp > 0.0):
            raise InvalidInputError(f"aerial_m_per_px must be finite and > 0, got {mpp}")
    if inlier_range_m is not None:
        range_m = float(inlier_range_m)
        if not (math.isfinite(range_m) and range_m >= 0.0):
            raise InvalidInputError(f"inlier_range_m must be finite and >= 0, got {range_m}")
    g = as_points(source, 2, "source")
    a = as_points(target, 2, "target")
    n = g.shape[0]
    if a.shape[0] != n:
        raise InvalidInputError(f"source has {n} points, target {a.shape[0]}")
    w = np.ones(n) if weights is None else check_weights(weights, n)
    if n < 3 or np.count_nonzero(w) < 3:
        raise DegenerateInputError("the pose covariance needs at least 3 weighted inliers")
    w = w / w.max()
    q = g @ (model.scale * model.rotation).T
    resid = a - (q + model.translation_m)
    dof = max(2 * n - 4, 1)
    sigma2 = max(float(np.sum(resid * resid)) / dof, cfg.min_sigma_m**2)

    # Stacked Jacobian rows: x-rows then y-rows, columns (t_e, t_n, yaw, s).
    s = model.scale
    jx = np.stack([np.ones(n), np.zeros(n), -q[:, 1], q[:, 0] / s], axis=1)
    jy = np.stack([np.zeros(n), np.ones(n), q[:, 0], q[:, 1] / s], axis=1)
    h = (jx * w[:, None]).T @ jx + (jy * w[:, None]).T @ jy
    m = (jx * (w * w)[:, None]).T @ jx + (jy * (w * w)[:, None]).T @ jy
    if not np.all(np.isfinite(h)) or np.linalg.cond(h) > 1e12:
        raise DegenerateInputError("normal matrix of the similarity is singular")
    h_inv = np.linalg.inv(h)
    unit = h_inv @ m @ h_inv  # covariance per unit residual variance
    unit3 = 0.5 * (unit[:3, :3] + unit[:3, :3].T)
    raw = sigma2 * unit3
    k = inflation_factor(n, inlier_ratio, cfg)
    floor = np.zeros((3, 3))
    position_var_m2 = cfg.min_position_sigma_m**2
    if aerial_m_per_px is not None:
        # Shared keypoint error: the fit's covariance as if the inliers were one observation.
        n_eff = float(np.sum(w)) ** 2 / float(np.sum(w * w))
        floor += (cfg.aerial_sigma_px * float(aerial_m_per_px)) ** 2 * n_eff * unit3
        position_var_m2 += cfg.map_georef_sigma_m**2
    position_var_m2 += attitude_position_var_m2(inlier_range_m, cfg)
    floor[0, 0] += position_var_m2
    floor[1, 1] += position_var_m2
    floor[2, 2] += cfg.min_yaw_sigma_rad**2
    cov = k * raw + floor
    if not np.all(np.isfinite(cov)) or np.linalg.eigvalsh(cov).min() <= 0.0:
        raise DegenerateInputError("pose covariance is not positive definite")
    return PoseCovariance(
        cov_en_yaw=np.asarray(cov, dtype=np.float64),
        sigma_m=math.sqrt(sigma2),
        inflation=k,
        raw_cov_en_yaw=np.asarray(raw, dtype=np.float64),
        floor_cov_en_yaw=np.asarray(floor, dtype=np.float64),
    )


def nees(error_en_yaw: FloatArray, cov_en_yaw: FloatArray) -> float:
    """Normalised estimation error squared ``eᵀ C⁻¹ e`` of an (east, north, yaw) error."""
    e = np.asarray(error_en_yaw, dtype=np.float64).reshape(3)
    c = np.asarray(cov_en_yaw, dtype=np.float64).reshape(3, 3)
    return float(e @ np.linalg.solve(c, e))
