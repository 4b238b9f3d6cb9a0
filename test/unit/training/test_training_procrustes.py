"""The torch Procrustes agrees with the core's numpy solver and is differentiable."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cvgl_ros.core.procrustes import fit_similarity  # noqa: E402
from cvgl_ros.training.procrustes import (  # noqa: E402
    rotation_2d,
    weighted_procrustes_2d,
)

torch.set_num_threads(2)


def _random_problem(seed: int, n: int, noise: float):
    rng = np.random.default_rng(seed)
    g = rng.normal(scale=10.0, size=(n, 2))
    yaw = rng.uniform(-math.pi, math.pi)
    s = rng.uniform(0.3, 3.0)
    t = rng.normal(scale=20.0, size=2)
    r = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    a = s * g @ r.T + t + rng.normal(scale=noise, size=(n, 2))
    w = rng.uniform(0.0, 1.0, size=n)
    return g, a, w, (s, yaw, t)


class TestAgreementWithCore:
    @settings(max_examples=40, deadline=None)
    @given(
        seed=st.integers(0, 2**31 - 1),
        n=st.integers(3, 40),
        noise=st.sampled_from([0.0, 0.5, 5.0]),
    )
    def test_matches_numpy_solver(self, seed: int, n: int, noise: float) -> None:
        g, a, w, _ = _random_problem(seed, n, noise)
        ref = fit_similarity(g, a, w)
        est = weighted_procrustes_2d(
            torch.from_numpy(g)[None],
            torch.from_numpy(a)[None],
            torch.from_numpy(w)[None],
            eps=0.0,
        )
        assert float(est.scale[0]) == pytest.approx(ref.scale, rel=1e-9, abs=1e-9)
        dyaw = math.remainder(float(est.yaw_rad[0]) - ref.yaw_rad, 2 * math.pi)
        assert abs(dyaw) < 1e-9
        np.testing.assert_allclose(est.translation_m[0].numpy(), ref.translation_m, atol=1e-7)

    def test_exact_recovery_batched(self) -> None:
        problems = [_random_problem(s, 10, 0.0) for s in range(4)]
        g = torch.tensor(np.stack([p[0] for p in problems]))
        a = torch.tensor(np.stack([p[1] for p in problems]))
        w = torch.ones(4, 10, dtype=torch.float64)
        est = weighted_procrustes_2d(g, a, w, eps=1e-12)
        for i, (_, _, _, (s, yaw, t)) in enumerate(problems):
            assert float(est.scale[i]) == pytest.approx(s, rel=1e-9)
            assert abs(math.remainder(float(est.yaw_rad[i]) - yaw, 2 * math.pi)) < 1e-9
            np.testing.assert_allclose(est.translation_m[i].numpy(), t, atol=1e-8)
        np.testing.assert_allclose(est.apply(g).numpy(), a.numpy(), atol=1e-8)

    def test_never_a_reflection(self) -> None:
        g = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
        mirrored = g * torch.tensor([1.0, -1.0], dtype=torch.float64)
        est = weighted_procrustes_2d(g, mirrored, torch.ones(1, 3, dtype=torch.float64))
        assert float(torch.det(est.rotation[0])) == pytest.approx(1.0)
        assert float(est.scale[0]) > 0.0

    def test_zero_weights_drop_outliers(self) -> None:
        g, a, _, (s, _yaw, t) = _random_problem(3, 12, 0.0)
        a[:4] += 100.0
        w = np.ones(12)
        w[:4] = 0.0
        est = weighted_procrustes_2d(
            torch.tensor(g)[None], torch.tensor(a)[None], torch.tensor(w)[None], eps=1e-12
        )
        assert float(est.scale[0]) == pytest.approx(s, rel=1e-8)
        np.testing.assert_allclose(est.translation_m[0].numpy(), t, atol=1e-6)

    def test_rigid_mode_keeps_unit_scale(self) -> None:
        g, a, w, _ = _random_problem(5, 10, 0.1)
        est = weighted_procrustes_2d(
            torch.tensor(g)[None], torch.tensor(a)[None], torch.tensor(w)[None], with_scale=False
        )
        assert float(est.scale[0]) == 1.0


class TestDifferentiability:
    def test_gradcheck_float64(self) -> None:
        g, a, w, _ = _random_problem(7, 6, 0.3)
        gt = torch.tensor(g[None], requires_grad=True)
        at = torch.tensor(a[None], requires_grad=True)
        wt = torch.tensor(w[None] + 0.1, requires_grad=True)

        def fn(g_, a_, w_):
            est = weighted_procrustes_2d(g_, a_, w_)
            return est.scale, est.yaw_rad, est.translation_m

        assert torch.autograd.gradcheck(fn, (gt, at, wt), eps=1e-6, atol=1e-5)

    def test_degenerate_input_gives_finite_gradients(self) -> None:
        g = torch.zeros(1, 4, 2, dtype=torch.float64, requires_grad=True)
        a = torch.zeros(1, 4, 2, dtype=torch.float64, requires_grad=True)
        w = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
        est = weighted_procrustes_2d(g, a, w)
        (est.scale.sum() + est.yaw_rad.sum() + est.translation_m.sum()).backward()
        for t in (g, a, w):
            assert t.grad is not None and torch.all(torch.isfinite(t.grad))


class TestErrors:
    def test_shape_mismatch(self) -> None:
        with pytest.raises(ValueError, match="source and target"):
            weighted_procrustes_2d(torch.zeros(1, 3, 2), torch.zeros(1, 4, 2), torch.ones(1, 3))
        with pytest.raises(ValueError, match="weights"):
            weighted_procrustes_2d(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), torch.ones(1, 4))


def test_rotation_2d_is_ccw() -> None:
    r = rotation_2d(torch.tensor([math.pi / 2], dtype=torch.float64))[0]
    np.testing.assert_allclose(r.numpy() @ np.array([1.0, 0.0]), [0.0, 1.0], atol=1e-12)
