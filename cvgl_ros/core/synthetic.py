"""Synthetic planar correspondence problems with known ground truth.

Used to test RANSAC and the covariance (NEES), to calibrate
:class:`~cvgl_ros.core.config.CovarianceConfig` and in the benchmarks. Not a test double: it
generates data, it does not stand in for an interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from cvgl_ros.core.config import LocalizerConfig
from cvgl_ros.core.procrustes import Similarity2D
from cvgl_ros.core.types import BoolArray, FloatArray

Layout = Literal["forward", "nadir"]


@dataclass(frozen=True)
class SyntheticProblem:
    """Correspondences ``target ≈ truth(source)`` with Gaussian noise and outliers.

    Attributes:
        source: (N, 2) float64, planar ground points (camera-centred), depth units.
        target: (N, 2) float64, aerial (east, north), metres.
        weights: (N,) float64 in [0, 1], match probabilities (higher on average for inliers).
        is_inlier: (N,) bool, ground-truth inliers.
        truth: the true similarity (its translation is the camera position).
        noise_sigma_m: per-axis standard deviation of the inlier noise, metres.
    """

    source: FloatArray
    target: FloatArray
    weights: FloatArray
    is_inlier: BoolArray
    truth: Similarity2D
    noise_sigma_m: float


def make_problem(
    rng: np.random.Generator,
    num_points: int,
    outlier_ratio: float,
    noise_sigma_m: float,
    *,
    layout: Layout = "forward",
    scale: float = 1.0,
    yaw_rad: float | None = None,
    translation_m: FloatArray | None = None,
    extent_m: float = 50.0,
    informative_weights: bool = True,
    range_noise_ratio: float = 0.0,
) -> SyntheticProblem:
    """Draw one problem.

    Args:
        rng: random generator.
        num_points: N correspondences.
        outlier_ratio: fraction of outliers in [0, 1).
        noise_sigma_m: per-axis Gaussian noise of inliers in the target frame, metres.
        layout: ``forward`` (points in front of the camera, x in [2, extent], |y| <= x) or
            ``nadir`` (a square of side ``extent`` around the camera).
        scale: true scale.
        yaw_rad: true yaw (random when None).
        translation_m: true camera position (random within +-extent/2 when None).
        extent_m: size of the scene, metres.
        informative_weights: inlier weights ~ U(0.3, 1), outlier weights ~ U(0, 0.7);
            otherwise all ~ U(0, 1) independently of inlier status.
        range_noise_ratio: relative depth error (standard deviation) applied to the measured
            source points along their ray from the camera, like a depth model's error.

    Returns:
        The problem.
    """
    n = int(num_points)
    if layout == "forward":
        x = rng.uniform(2.0, extent_m, n)
        y = rng.uniform(-1.0, 1.0, n) * x
        src = np.stack([x, y], axis=1)
    else:
        src = rng.uniform(-0.5 * extent_m, 0.5 * extent_m, (n, 2))
    src = src / scale
    yaw = float(rng.uniform(-np.pi, np.pi)) if yaw_rad is None else float(yaw_rad)
    t = (
        rng.uniform(-0.5 * extent_m, 0.5 * extent_m, 2)
        if translation_m is None
        else np.asarray(translation_m, dtype=np.float64)
    )
    truth = Similarity2D(scale=float(scale), yaw_rad=yaw, translation_m=t)
    dst = truth.apply(src) + rng.normal(0.0, noise_sigma_m, (n, 2))
    if range_noise_ratio > 0.0:
        src = src * (1.0 + rng.normal(0.0, range_noise_ratio, (n, 1)))
    num_out = round(outlier_ratio * n)
    is_inlier = np.ones(n, dtype=np.bool_)
    out_idx = rng.choice(n, num_out, replace=False)
    is_inlier[out_idx] = False
    center = truth.apply(np.mean(src, axis=0, keepdims=True))[0]
    dst[out_idx] = center + rng.uniform(-1.2 * extent_m, 1.2 * extent_m, (num_out, 2))
    if informative_weights:
        weights = np.where(is_inlier, rng.uniform(0.3, 1.0, n), rng.uniform(0.0, 0.7, n))
    else:
        weights = rng.uniform(0.0, 1.0, n)
    return SyntheticProblem(src, dst, weights, is_inlier, truth, float(noise_sigma_m))


def simulated_nees(
    trials: int, seed: int, config: LocalizerConfig | None = None
) -> tuple[FloatArray, FloatArray]:
    """NEES of the published and of the un-inflated covariance on simulated solves.

    Each trial draws a problem with :func:`make_problem` (40-800 points, 0-75 % outliers,
    0.2-1 m noise, relative depth error 0-5 %, forward (60 %) or nadir layout, metric or
    unknown scale), solves it with the localizer's :func:`solve_patch_pose` under a wide
    (20 m) position prior, and keeps the solves the gates accept.

    Args:
        trials: number of problems drawn.
        seed: seed of the problem generator.
        config: localizer configuration (default: ``LocalizerConfig()``).

    Returns:
        ``(nees, raw_nees)``: (M,) float64 each, M <= trials gated-OK solves; NEES of
        (east m, north m, yaw rad) under the published covariance and under the least-squares
        covariance before inflation and floors.
    """
    # Imported here: the localizer module itself depends on this package's solver modules.
    from cvgl_ros.core.covariance import nees
    from cvgl_ros.core.geodesy import wrap_angle_rad
    from cvgl_ros.core.localizer import solve_patch_pose

    cfg = LocalizerConfig() if config is None else config
    rng = np.random.default_rng(seed)
    values, raw_values = [], []
    for _ in range(trials):
        p = make_problem(
            rng,
            int(rng.choice([40, 100, 300, 800])),
            float(rng.uniform(0.0, 0.75)),
            float(rng.uniform(0.2, 1.0)),
            layout="forward" if rng.random() < 0.6 else "nadir",
            scale=float(rng.choice([1.0, rng.uniform(0.5, 2.0)])),
            range_noise_ratio=float(rng.choice([0.0, 0.02, 0.05])),
        )
        sol = solve_patch_pose(p.source, p.target, p.weights, cfg, np.zeros(2), np.eye(2) * 400)
        if not sol.gate.ok:
            continue
        m = sol.ransac.model
        err = np.array(
            [
                *(m.translation_m - p.truth.translation_m),
                float(wrap_angle_rad(m.yaw_rad - p.truth.yaw_rad)),
            ]
        )
        values.append(nees(err, sol.covariance.cov_en_yaw))
        raw_values.append(nees(err, sol.covariance.raw_cov_en_yaw))
    return np.asarray(values, dtype=np.float64), np.asarray(raw_values, dtype=np.float64)
