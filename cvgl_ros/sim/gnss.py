"""GNSS receiver error model for the coarse prior: bias, random walk, white noise, dropouts.

Real receivers are not white-noise sources: a multipath / atmosphere bias that changes slowly
(modelled as a constant bias plus a random walk), per-fix white noise, and outages during which
the driver reports ``NO_FIX`` or publishes nothing. The receiver reports its own (often
optimistic) standard deviation, which is what a NavSatFix covariance carries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cvgl_ros.core.types import BoolArray, FloatArray

DropoutMode = Literal["no_fix", "silent"]


@dataclass(frozen=True)
class GnssNoiseConfig:
    """Error model of a simulated GNSS receiver.

    Attributes:
        rate_hz: fix rate, Hz.
        bias_east_m: constant east bias, metres.
        bias_north_m: constant north bias, metres.
        random_walk_m_per_sqrt_s: random-walk density of the slowly varying error, m/sqrt(s).
        white_sigma_m: per-axis white noise of each fix, metres.
        reported_sigma_m: per-axis standard deviation the receiver reports (NavSatFix
            covariance), metres.
        dropout_rate_per_s: rate at which outages start, 1/s (0 = never).
        dropout_mean_s: mean outage duration (exponential), seconds.
        dropout_mode: ``"no_fix"`` publishes fixes with status NO_FIX during outages,
            ``"silent"`` publishes nothing.
        seed: random seed.
    """

    rate_hz: float = 5.0
    bias_east_m: float = 6.0
    bias_north_m: float = -4.0
    random_walk_m_per_sqrt_s: float = 0.3
    white_sigma_m: float = 1.5
    reported_sigma_m: float = 10.0
    dropout_rate_per_s: float = 0.0
    dropout_mean_s: float = 2.0
    dropout_mode: DropoutMode = "no_fix"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rate_hz", "reported_sigma_m", "dropout_mean_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be positive, got {value}")
        for name in ("random_walk_m_per_sqrt_s", "white_sigma_m", "dropout_rate_per_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name in ("bias_east_m", "bias_north_m"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if self.dropout_mode not in ("no_fix", "silent"):
            raise ValueError(
                f"dropout_mode must be 'no_fix' or 'silent', got {self.dropout_mode!r}"
            )


@dataclass(frozen=True)
class GnssTrace:
    """Simulated fixes.

    Attributes:
        stamps_s: (M,) float64, seconds.
        east_m: (M,) float64, metres, fix position (NaN during outages).
        north_m: (M,) float64, metres (NaN during outages).
        has_fix: (M,) bool, False during outages.
        reported_sigma_m: per-axis standard deviation the receiver reports, metres.
    """

    stamps_s: FloatArray
    east_m: FloatArray
    north_m: FloatArray
    has_fix: BoolArray
    reported_sigma_m: float


def simulate_gnss(
    true_stamps_s: FloatArray, true_en_m: FloatArray, cfg: GnssNoiseConfig
) -> GnssTrace:
    """Simulate receiver fixes along a true path.

    Args:
        true_stamps_s: (N,) float64, seconds, increasing; fixes cover [first, last].
        true_en_m: (N, 2) float64, metres, true (east, north) at those stamps.
        cfg: receiver error model.

    Returns:
        Fixes at ``cfg.rate_hz`` from the first stamp to the last (inclusive of the first).
    """
    ts = np.asarray(true_stamps_s, dtype=np.float64).reshape(-1)
    en = np.asarray(true_en_m, dtype=np.float64).reshape(-1, 2)
    if len(ts) != len(en) or len(ts) == 0:
        raise ValueError("true_stamps_s and true_en_m must be non-empty and of equal length")
    rng = np.random.default_rng(cfg.seed)
    dt = 1.0 / cfg.rate_hz
    stamps = np.arange(ts[0] - dt, ts[-1] + dt + 1e-9, dt)
    m = len(stamps)
    true_e = np.interp(stamps, ts, en[:, 0])
    true_n = np.interp(stamps, ts, en[:, 1])
    walk = np.cumsum(rng.normal(0.0, cfg.random_walk_m_per_sqrt_s * math.sqrt(dt), (m, 2)), axis=0)
    white = rng.normal(0.0, cfg.white_sigma_m, (m, 2))
    east = true_e + cfg.bias_east_m + walk[:, 0] + white[:, 0]
    north = true_n + cfg.bias_north_m + walk[:, 1] + white[:, 1]
    has_fix = np.ones(m, dtype=bool)
    if cfg.dropout_rate_per_s > 0.0:
        i = 0
        while i < m:
            if rng.random() < cfg.dropout_rate_per_s * dt:
                length = max(1, round(rng.exponential(cfg.dropout_mean_s) / dt))
                has_fix[i : i + length] = False
                i += length
            else:
                i += 1
    east[~has_fix] = np.nan
    north[~has_fix] = np.nan
    return GnssTrace(stamps, east, north, has_fix, cfg.reported_sigma_m)
