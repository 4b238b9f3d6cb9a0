"""GNSS error model: bias, noise levels, dropouts, validation."""

from __future__ import annotations

import numpy as np
import pytest

from cvgl_ros.sim.gnss import GnssNoiseConfig, simulate_gnss


def _line(n: int = 101) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 100.0, n)
    return t, np.stack([2.0 * t, -t], axis=1)


def test_bias_and_white_noise_statistics() -> None:
    t, en = _line()
    cfg = GnssNoiseConfig(
        rate_hz=10.0, bias_east_m=5.0, bias_north_m=-3.0, random_walk_m_per_sqrt_s=0.0,
        white_sigma_m=2.0, seed=1,
    )  # fmt: skip
    tr = simulate_gnss(t, en, cfg)
    true_e = np.interp(tr.stamps_s, t, en[:, 0])
    true_n = np.interp(tr.stamps_s, t, en[:, 1])
    err = np.stack([tr.east_m - true_e, tr.north_m - true_n], axis=1)
    assert len(tr.stamps_s) >= 1000
    np.testing.assert_allclose(err.mean(axis=0), [5.0, -3.0], atol=0.25)
    np.testing.assert_allclose(err.std(axis=0), [2.0, 2.0], rtol=0.1)
    assert tr.has_fix.all()


def test_random_walk_grows_with_time() -> None:
    t, en = _line()
    cfg = GnssNoiseConfig(
        rate_hz=5.0, bias_east_m=0.0, bias_north_m=0.0, random_walk_m_per_sqrt_s=1.0,
        white_sigma_m=0.0, seed=2,
    )  # fmt: skip
    errs = []
    for seed in range(40):
        tr = simulate_gnss(t, en, GnssNoiseConfig(**{**cfg.__dict__, "seed": seed}))
        errs.append(tr.east_m[-1] - np.interp(tr.stamps_s[-1], t, en[:, 0]))
    # Var of a random walk after ~100 s at 1 m/sqrt(s) is ~100 m^2.
    assert 40.0 < float(np.var(errs)) < 250.0


def test_dropouts_mark_no_fix_and_nan() -> None:
    t, en = _line()
    tr = simulate_gnss(t, en, GnssNoiseConfig(dropout_rate_per_s=0.2, dropout_mean_s=2.0, seed=5))
    assert (~tr.has_fix).any() and tr.has_fix.any()
    assert np.all(np.isnan(tr.east_m[~tr.has_fix]))
    assert np.all(np.isfinite(tr.east_m[tr.has_fix]))


def test_deterministic_for_seed() -> None:
    t, en = _line()
    a = simulate_gnss(t, en, GnssNoiseConfig(seed=9))
    b = simulate_gnss(t, en, GnssNoiseConfig(seed=9))
    np.testing.assert_array_equal(a.east_m, b.east_m)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate_hz": 0.0}, "rate_hz"),
        ({"white_sigma_m": -1.0}, "white_sigma_m"),
        ({"reported_sigma_m": 0.0}, "reported_sigma_m"),
        ({"bias_east_m": float("inf")}, "bias_east_m"),
        ({"dropout_mode": "sometimes"}, "dropout_mode"),
    ],
)
def test_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GnssNoiseConfig(**kwargs)  # type: ignore[arg-type]


def test_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="equal length"):
        simulate_gnss(np.zeros(3), np.zeros((2, 2)), GnssNoiseConfig())
