"""RANSAC: recovery with heavy outliers, priors, determinism, typed failures.

Every test runs twice: on the compiled kernel and on the numpy solver (numba hidden, as on a
machine without it: ``implementation="auto"`` must fall back).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core import ransac
from cvgl_ros.core.config import RansacConfig
from cvgl_ros.core.errors import DegenerateInputError, InvalidInputError, NoValidHypothesisError
from cvgl_ros.core.ransac import HypothesisPriors, ransac_similarity
from cvgl_ros.core.synthetic import SyntheticProblem, make_problem


@pytest.fixture(autouse=True, params=["numba", "numpy"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on the compiled kernel, then with numba hidden (numpy fallback)."""
    if request.param == "numba":
        if ransac.load_compiled_kernel() is None:
            pytest.skip(f"numba kernel unavailable: {ransac.compiled_kernel_error()}")
    else:
        monkeypatch.setattr(ransac, "_kernel_module", None)
        monkeypatch.setattr(ransac, "_kernel_error", "numba hidden by the test")
    assert ransac.resolve_implementation() == request.param
    return str(request.param)


def _check_recovered(
    p: SyntheticProblem, res_model_t: np.ndarray, yaw: float, scale: float
) -> None:
    tol_m = 8.0 * p.noise_sigma_m  # generous: a few hundred inliers give ~sigma/10
    assert np.linalg.norm(res_model_t - p.truth.translation_m) < tol_m
    assert abs(math.remainder(yaw - p.truth.yaw_rad, 2 * math.pi)) < 0.02
    assert scale == pytest.approx(p.truth.scale, rel=0.02)


@pytest.mark.parametrize("outlier_ratio", [0.5, 0.8])
@pytest.mark.parametrize("informative", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_pose_with_outliers(outlier_ratio: float, informative: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = make_problem(
        rng, 400, outlier_ratio, 0.5, layout="forward", informative_weights=informative
    )
    res = ransac_similarity(p.source, p.target, p.weights, RansacConfig(seed=seed))
    _check_recovered(p, res.model.translation_m, res.model.yaw_rad, res.model.scale)
    # Inliers found are (nearly) the true inliers: outliers landing within the threshold by
    # chance are allowed, missed true inliers (beyond ~4.2 sigma) are rare.
    true_in = p.is_inlier
    assert np.count_nonzero(res.inlier_mask & true_in) >= 0.97 * np.count_nonzero(true_in)
    assert res.num_inliers == np.count_nonzero(res.inlier_mask)
    assert res.inlier_ratio == pytest.approx(res.num_inliers / 400)
    np.testing.assert_allclose(
        res.residuals_m, np.linalg.norm(p.target - res.model.apply(p.source), axis=1), atol=1e-6
    )


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 100_000),
    scale=st.floats(0.2, 5.0),
    n=st.integers(60, 1500),
    outlier_ratio=st.floats(0.0, 0.7),
)
def test_property_recovery(seed: int, scale: float, n: int, outlier_ratio: float) -> None:
    rng = np.random.default_rng(seed)
    p = make_problem(rng, n, outlier_ratio, 0.3, layout="nadir", scale=scale)
    res = ransac_similarity(p.source, p.target, p.weights, RansacConfig(seed=seed % 1000))
    _check_recovered(p, res.model.translation_m, res.model.yaw_rad, res.model.scale)


def test_unweighted_mode_and_no_weights() -> None:
    p = make_problem(np.random.default_rng(3), 300, 0.5, 0.5)
    for weights, cfg in ((None, RansacConfig()), (p.weights, RansacConfig(use_weights=False))):
        res = ransac_similarity(p.source, p.target, weights, cfg)
        _check_recovered(p, res.model.translation_m, res.model.yaw_rad, res.model.scale)


def test_deterministic_for_a_seed() -> None:
    p = make_problem(np.random.default_rng(4), 500, 0.6, 0.5)
    a = ransac_similarity(p.source, p.target, p.weights, RansacConfig(seed=11))
    b = ransac_similarity(p.source, p.target, p.weights, RansacConfig(seed=11))
    assert a.model.scale == b.model.scale
    assert a.model.yaw_rad == b.model.yaw_rad
    np.testing.assert_array_equal(a.model.translation_m, b.model.translation_m)
    assert a.iterations == b.iterations
    np.testing.assert_array_equal(a.inlier_mask, b.inlier_mask)


def test_adaptive_termination_and_cap() -> None:
    easy = make_problem(np.random.default_rng(5), 500, 0.1, 0.3)
    res = ransac_similarity(easy.source, easy.target, easy.weights, RansacConfig(batch_size=8))
    assert res.iterations <= 16  # high inlier ratio -> stops after a batch or two
    hard = make_problem(np.random.default_rng(6), 500, 0.9, 0.3, informative_weights=False)
    res = ransac_similarity(
        hard.source, hard.target, hard.weights, RansacConfig(max_iterations=40, batch_size=16)
    )
    assert res.iterations == 40  # capped


def test_priors_reject_hypotheses() -> None:
    p = make_problem(np.random.default_rng(8), 300, 0.3, 0.3, yaw_rad=0.5, scale=1.0)
    free = ransac_similarity(p.source, p.target, p.weights)
    assert free.model.yaw_rad == pytest.approx(0.5, abs=0.01)
    good = HypothesisPriors(
        scale_min=0.8,
        scale_max=1.25,
        yaw_rad=0.45,
        yaw_tolerance_rad=0.2,
        position_en_m=p.truth.translation_m + 5.0,
        position_cov_m2=np.eye(2) * 25.0,
    )
    res = ransac_similarity(p.source, p.target, p.weights, priors=good)
    assert res.model.yaw_rad == pytest.approx(0.5, abs=0.01)
    for bad in (
        HypothesisPriors(yaw_rad=0.5 + math.pi, yaw_tolerance_rad=0.3),
        HypothesisPriors(scale_min=2.0, scale_max=4.0),
        HypothesisPriors(
            position_en_m=p.truth.translation_m + 500.0, position_cov_m2=np.eye(2) * 4.0
        ),
    ):
        try:
            res = ransac_similarity(p.source, p.target, p.weights, priors=bad)
        except NoValidHypothesisError:
            continue
        # If some outlier pair happens to satisfy the prior, the result must obey it anyway.
        z = res.model.scale * complex(math.cos(res.model.yaw_rad), math.sin(res.model.yaw_rad))
        t = complex(*res.model.translation_m)
        assert bad.accepts(np.array([z]), np.array([t]))[0]
        assert res.num_inliers < 0.5 * np.count_nonzero(p.is_inlier)


def test_typed_errors() -> None:
    rng = np.random.default_rng(0)
    src, dst = rng.random((10, 2)), rng.random((10, 2))
    with pytest.raises(InvalidInputError):
        ransac_similarity(np.empty((0, 2)), np.empty((0, 2)))
    with pytest.raises(InvalidInputError):
        ransac_similarity(np.where(np.eye(10, 2) > 0, np.nan, src), dst)
    with pytest.raises(InvalidInputError):
        ransac_similarity(src, np.where(np.eye(10, 2) > 0, np.inf, dst))
    with pytest.raises(InvalidInputError):
        ransac_similarity(src, dst[:5])
    with pytest.raises(InvalidInputError):
        ransac_similarity(src, dst, np.full(10, np.nan))
    with pytest.raises(DegenerateInputError):
        ransac_similarity(src[:1], dst[:1])
    with pytest.raises(DegenerateInputError):
        ransac_similarity(src, dst, np.zeros(10))
    with pytest.raises(NoValidHypothesisError):
        ransac_similarity(np.ones((10, 2)), dst)  # every minimal sample is degenerate
    with pytest.raises(InvalidInputError):
        HypothesisPriors(position_en_m=np.zeros(2), position_cov_m2=-np.eye(2))
