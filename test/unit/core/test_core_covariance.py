"""Pose covariance: analytic cases, inflation, NEES consistency on simulated data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cvgl_ros.core.config import CovarianceConfig, LocalizerConfig
from cvgl_ros.core.covariance import CHI2_3DOF_95, inflation_factor, pose_covariance
from cvgl_ros.core.errors import DegenerateInputError, InvalidInputError
from cvgl_ros.core.procrustes import Similarity2D
from cvgl_ros.core.synthetic import simulated_nees

RAW = CovarianceConfig(
    base_inflation=1.0,
    count_inflation=0.0,
    ratio_inflation=0.0,
    min_sigma_m=0.0,
    min_position_sigma_m=0.0,
    min_yaw_sigma_rad=0.0,
    aerial_px_sigma=0.0,
    map_georef_sigma_m=0.0,
)


def test_raw_covariance_matches_closed_form() -> None:
    # Points centred on the camera: t decouples from yaw/scale, var(t) = sigma^2 / n,
    # var(yaw) = sigma^2 / (s^2 sum |g|^2).
    rng = np.random.default_rng(0)
    src = rng.uniform(-20.0, 20.0, (200, 2))
    src -= src.mean(axis=0)
    model = Similarity2D(1.5, 0.3, np.array([4.0, 5.0]))
    resid = rng.normal(0.0, 0.4, (200, 2))
    dst = model.apply(src) + resid
    cov = pose_covariance(src, dst, model, config=RAW)
    sigma2 = float(np.sum(resid**2)) / (2 * 200 - 4)
    assert cov.sigma_m == pytest.approx(math.sqrt(sigma2))
    np.testing.assert_allclose(np.diag(cov.cov_en_yaw)[:2], sigma2 / 200, rtol=1e-9)
    expected_yaw = sigma2 / (1.5**2 * float(np.sum(src**2)))
    assert cov.cov_en_yaw[2, 2] == pytest.approx(expected_yaw, rel=1e-9)
    np.testing.assert_allclose(cov.cov_en_yaw, cov.cov_en_yaw.T)
    assert cov.inflation == 1.0


def test_forward_points_correlate_position_and_yaw() -> None:
    # Points ahead of the camera (+x): a yaw error moves them sideways, which a sideways
    # translation can offset, so the lateral position and yaw are strongly correlated.
    rng = np.random.default_rng(1)
    src = np.stack([rng.uniform(20.0, 40.0, 100), rng.uniform(-5.0, 5.0, 100)], axis=1)
    model = Similarity2D(1.0, 0.0, np.zeros(2))
    dst = model.apply(src) + rng.normal(0.0, 0.5, (100, 2))
    c = pose_covariance(src, dst, model, config=RAW).cov_en_yaw
    corr = c[1, 2] / math.sqrt(c[1, 1] * c[2, 2])
    assert corr < -0.9
    # ... and both position axes are far less certain than sigma^2 / n (lever arm, scale).
    assert min(c[0, 0], c[1, 1]) > 5.0 * 0.5**2 / 100


def test_inflation_grows_with_fewer_inliers_and_lower_ratio() -> None:
    cfg = CovarianceConfig()
    assert inflation_factor(10, 0.3, cfg) > inflation_factor(100, 0.3, cfg)
    assert inflation_factor(100, 0.3, cfg) > inflation_factor(100, 0.9, cfg)
    assert inflation_factor(10**9, 1.0, CovarianceConfig(base_inflation=1.0)) == pytest.approx(
        1.0, abs=1e-3
    )


def test_covariance_errors() -> None:
    model = Similarity2D(1.0, 0.0, np.zeros(2))
    with pytest.raises(DegenerateInputError):
        pose_covariance(np.zeros((2, 2)), np.zeros((2, 2)), model)
    with pytest.raises(InvalidInputError):
        pose_covariance(np.full((5, 2), np.nan), np.zeros((5, 2)), model)
    with pytest.raises(InvalidInputError):
        pose_covariance(np.empty((0, 2)), np.empty((0, 2)), model)


def _nees_trials(trials: int, seed: int) -> np.ndarray:
    # Simulated targets are exact map coordinates: no georeferencing error to account for.
    cfg = LocalizerConfig(covariance=CovarianceConfig(map_georef_sigma_m=0.0))
    return simulated_nees(trials, seed, cfg)[0]


def test_nees_is_chi2_3_consistent() -> None:
    """About 95 % of the NEES values fall inside the chi-square(3) 95 % bound."""
    values = _nees_trials(400, seed=2024)
    assert len(values) > 300
    inside = float(np.mean(values < CHI2_3DOF_95))
    assert 0.93 <= inside <= 0.99, inside
    assert 1.8 <= float(np.mean(values)) <= 3.6
