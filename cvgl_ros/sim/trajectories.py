"""Planar trajectories (east, north, yaw over time) for synthetic flights and drives.

Positions are metres in a local ENU frame (for the synthesiser: relative to the world patch
centre); yaw is the ENU heading of the body +x axis (0 = east, counter-clockwise, radians).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cvgl_ros.core.types import FloatArray

TrajectoryKind = Literal["straight", "loop", "random_walk"]
TRAJECTORY_KINDS: tuple[str, ...] = ("straight", "loop", "random_walk")


@dataclass(frozen=True)
class Trajectory:
    """Sampled poses of a moving platform.

    Attributes:
        stamps_s: (N,) float64, seconds from the start, increasing.
        east_m: (N,) float64, metres.
        north_m: (N,) float64, metres.
        yaw_enu_rad: (N,) float64, radians in (-pi, pi].
    """

    stamps_s: FloatArray
    east_m: FloatArray
    north_m: FloatArray
    yaw_enu_rad: FloatArray

    def __post_init__(self) -> None:
        n = len(self.stamps_s)
        if not (len(self.east_m) == len(self.north_m) == len(self.yaw_enu_rad) == n):
            raise ValueError("trajectory arrays must have the same length")
        if n > 1 and not np.all(np.diff(self.stamps_s) > 0):
            raise ValueError("stamps_s must be strictly increasing")

    def __len__(self) -> int:
        return len(self.stamps_s)

    def position_at(self, stamps_s: FloatArray) -> FloatArray:
        """Linearly interpolated (east, north) at arbitrary stamps: (M,) s -> (M, 2) m."""
        t = np.asarray(stamps_s, dtype=np.float64)
        return np.stack(
            [np.interp(t, self.stamps_s, self.east_m), np.interp(t, self.stamps_s, self.north_m)],
            axis=1,
        )


@dataclass(frozen=True)
class TrajectoryConfig:
    """Shape and sampling of a synthetic trajectory.

    Attributes:
        kind: ``"straight"`` (a line through the centre), ``"loop"`` (a circle around the
            centre) or ``"random_walk"`` (smoothly wandering heading, kept inside ``extent_m``).
        num_frames: number of camera frames.
        rate_hz: camera frame rate, Hz.
        speed_m_per_s: ground speed, m/s.
        heading_rad: initial ENU direction of travel, radians.
        radius_m: loop radius, metres.
        extent_m: the random walk turns back towards the centre beyond this radius, metres.
        turn_rate_sigma_rad_per_s: random-walk heading-rate noise, rad/s.
        yaw_follows_track: body yaw = direction of travel; else constant ``heading_rad``.
        seed: random seed (random walk only).
    """

    kind: TrajectoryKind = "loop"
    num_frames: int = 12
    rate_hz: float = 1.0
    speed_m_per_s: float = 8.0
    heading_rad: float = 0.0
    radius_m: float = 40.0
    extent_m: float = 80.0
    turn_rate_sigma_rad_per_s: float = 0.3
    yaw_follows_track: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in TRAJECTORY_KINDS:
            raise ValueError(f"kind must be one of {TRAJECTORY_KINDS}, got {self.kind!r}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        for name in ("rate_hz", "radius_m", "extent_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be positive, got {value}")
        if not (math.isfinite(self.speed_m_per_s) and self.speed_m_per_s >= 0.0):
            raise ValueError(f"speed_m_per_s must be >= 0, got {self.speed_m_per_s}")
        if not (
            math.isfinite(self.turn_rate_sigma_rad_per_s) and self.turn_rate_sigma_rad_per_s >= 0
        ):
            raise ValueError("turn_rate_sigma_rad_per_s must be >= 0")


def _wrap(a: FloatArray) -> FloatArray:
    return np.asarray(np.pi - np.mod(np.pi - a, 2.0 * np.pi), dtype=np.float64)


def make_trajectory(cfg: TrajectoryConfig) -> Trajectory:
    """Sample the trajectory ``cfg`` describes (deterministic for a given seed).

    Args:
        cfg: trajectory configuration.

    Returns:
        The trajectory, starting at stamp 0 s.
    """
    n = cfg.num_frames
    dt = 1.0 / cfg.rate_hz
    t = np.arange(n, dtype=np.float64) * dt
    if cfg.kind == "straight":
        s = cfg.speed_m_per_s * (t - t[-1] / 2.0)  # centred on the origin
        track = np.full(n, cfg.heading_rad)
        east, north = s * math.cos(cfg.heading_rad), s * math.sin(cfg.heading_rad)
    elif cfg.kind == "loop":
        omega = cfg.speed_m_per_s / cfg.radius_m  # counter-clockwise
        phase = cfg.heading_rad - math.pi / 2.0 + omega * t
        east, north = cfg.radius_m * np.cos(phase), cfg.radius_m * np.sin(phase)
        track = phase + math.pi / 2.0
    else:
        rng = np.random.default_rng(cfg.seed)
        east, north, track = np.zeros(n), np.zeros(n), np.zeros(n)
        heading, rate = cfg.heading_rad, 0.0
        for i in range(n):
            if i > 0:
                east[i] = east[i - 1] + cfg.speed_m_per_s * dt * math.cos(heading)
                north[i] = north[i - 1] + cfg.speed_m_per_s * dt * math.sin(heading)
            track[i] = heading
            rate = 0.7 * rate + cfg.turn_rate_sigma_rad_per_s * float(rng.normal())
            if math.hypot(east[i], north[i]) > cfg.extent_m:
                # Steer back towards the centre.
                home = math.atan2(-north[i], -east[i])
                rate += 0.5 * math.remainder(home - heading, 2.0 * math.pi) / dt
            heading += rate * dt
    yaw = track if cfg.yaw_follows_track else np.full(n, cfg.heading_rad)
    return Trajectory(
        stamps_s=t,
        east_m=np.asarray(east, dtype=np.float64) * np.ones(n),
        north_m=np.asarray(north, dtype=np.float64) * np.ones(n),
        yaw_enu_rad=_wrap(np.asarray(yaw, dtype=np.float64)),
    )
