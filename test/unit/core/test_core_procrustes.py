"""Weighted 2-D Umeyama: exact recovery, noise bounds, reflection guard, degeneracies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.errors import DegenerateInputError, InvalidInputError
from cvgl_ros.core.procrustes import Similarity2D, fit_similarity

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True)

similarities = st.builds(
    lambda s, yaw, tx, ty: Similarity2D(s, yaw, np.array([tx, ty])),
    st.floats(0.05, 20.0),
    st.floats(-math.pi + 1e-6, math.pi),
    st.floats(-500.0, 500.0),
    st.floats(-500.0, 500.0),
)


def _umeyama_svd(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Reference: Umeyama (1991) with the reflection guard, via SVD (scale, rotation)."""
    w = w / w.sum()
    ms, md = w @ src, w @ dst
    sc, dc = src - ms, dst - md
    cov = (dc * w[:, None]).T @ sc
    u, d, vt = np.linalg.svd(cov)
    sgn = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ sgn @ vt
    scale = float(np.trace(np.diag(d) @ sgn) / (w @ np.sum(sc * sc, axis=1)))
    return scale, rot


@SETTINGS
@given(truth=similarities, n=st.integers(2, 200), seed=st.integers(0, 10_000))
def test_exact_recovery_noise_free(truth: Similarity2D, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = rng.uniform(-50.0, 50.0, (n, 2))
    w = rng.uniform(0.05, 1.0, n)
    est = fit_similarity(src, truth.apply(src), w)
    assert est.scale == pytest.approx(truth.scale, rel=1e-8)
    assert abs(math.remainder(est.yaw_rad - truth.yaw_rad, 2 * math.pi)) < 1e-8
    np.testing.assert_allclose(est.translation_m, truth.translation_m, atol=1e-6)


@SETTINGS
@given(truth=similarities, seed=st.integers(0, 10_000))
def test_matches_svd_umeyama_with_reflection_guard(truth: Similarity2D, seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = rng.uniform(-20.0, 20.0, (30, 2))
    dst = rng.uniform(-20.0, 20.0, (30, 2))  # unrelated: a reflection may fit better
    dst[:, 0] *= -1.0
    w = rng.uniform(0.1, 1.0, 30)
    est = fit_similarity(src, dst, w)
    ref_scale, ref_rot = _umeyama_svd(src, dst, w)
    np.testing.assert_allclose(est.rotation, ref_rot, atol=1e-9)
    assert est.scale == pytest.approx(ref_scale, rel=1e-9)
    assert np.linalg.det(est.rotation) == pytest.approx(1.0)


def test_noisy_fit_within_predicted_bounds() -> None:
    """Over many trials the errors match the least-squares prediction sigma / sqrt(n)."""
    rng = np.random.default_rng(7)
    sigma, n, trials = 0.5, 100, 300
    truth = Similarity2D(1.2, 0.4, np.array([3.0, -4.0]))
    err_t, err_yaw, pred_t, pred_yaw = [], [], [], []
    for _ in range(trials):
        src = rng.uniform(-30.0, 30.0, (n, 2))
        dst = truth.apply(src) + rng.normal(0.0, sigma, (n, 2))
        est = fit_similarity(src, dst)
        centroid = src.mean(axis=0)
        # Error of the fitted point at the centroid is ~ sigma / sqrt(n) per axis.
        err_t.append(est.apply(centroid[None])[0] - truth.apply(centroid[None])[0])
        err_yaw.append(math.remainder(est.yaw_rad - truth.yaw_rad, 2 * math.pi))
        spread = np.sum((src - centroid) ** 2)
        pred_t.append(sigma / math.sqrt(n))
        pred_yaw.append(sigma / (truth.scale * math.sqrt(spread)))
    err_t_arr = np.array(err_t)
    std_t = float(np.sqrt(np.mean(err_t_arr**2)))
    std_yaw = float(np.sqrt(np.mean(np.square(err_yaw))))
    assert std_t == pytest.approx(float(np.mean(pred_t)), rel=0.15)
    assert std_yaw == pytest.approx(float(np.mean(pred_yaw)), rel=0.15)


def test_collinear_points_are_fine_for_a_similarity() -> None:
    src = np.stack([np.linspace(0, 10, 5), np.zeros(5)], axis=1)
    truth = Similarity2D(2.0, 1.0, np.array([1.0, 2.0]))
    est = fit_similarity(src, truth.apply(src))
    assert est.scale == pytest.approx(2.0)
    assert est.yaw_rad == pytest.approx(1.0)


def test_degenerate_inputs_raise_typed_errors() -> None:
    with pytest.raises(DegenerateInputError):
        fit_similarity(np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]]))  # one point
    with pytest.raises(DegenerateInputError):
        fit_similarity(np.ones((5, 2)), np.random.default_rng(0).random((5, 2)))  # coincident
    with pytest.raises(DegenerateInputError):
        fit_similarity(np.random.default_rng(0).random((5, 2)), np.ones((5, 2)))  # zero scale
    with pytest.raises(DegenerateInputError):
        fit_similarity(
            np.random.default_rng(0).random((5, 2)),
            np.random.default_rng(1).random((5, 2)),
            np.array([1.0, 0, 0, 0, 0]),
        )


@pytest.mark.parametrize(
    ("src", "dst", "w"),
    [
        (np.empty((0, 2)), np.empty((0, 2)), None),
        (np.array([[np.nan, 0.0], [1.0, 1.0]]), np.zeros((2, 2)), None),
        (np.array([[np.inf, 0.0], [1.0, 1.0]]), np.zeros((2, 2)), None),
        (np.zeros((3, 2)), np.zeros((2, 2)), None),
        (np.random.default_rng(0).random((3, 2)), np.zeros((3, 2)), np.array([1, np.nan, 1])),
        (np.random.default_rng(0).random((3, 2)), np.zeros((3, 2)), np.array([1.0, -1.0, 1.0])),
    ],
)
def test_invalid_inputs_raise(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None) -> None:
    with pytest.raises(InvalidInputError):
        fit_similarity(src, dst, w)
