"""Trajectories: shapes, speeds, determinism and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cvgl_ros.sim.trajectories import Trajectory, TrajectoryConfig, make_trajectory


def test_straight_line_has_constant_speed_and_heading() -> None:
    cfg = TrajectoryConfig(
        kind="straight", num_frames=11, rate_hz=2.0, speed_m_per_s=5.0, heading_rad=0.5
    )
    tr = make_trajectory(cfg)
    steps = np.hypot(np.diff(tr.east_m), np.diff(tr.north_m))
    np.testing.assert_allclose(steps, 2.5, atol=1e-9)
    np.testing.assert_allclose(tr.yaw_enu_rad, 0.5)
    assert tr.east_m[5] == pytest.approx(0.0, abs=1e-9)  # centred on the origin
    np.testing.assert_allclose(np.diff(tr.stamps_s), 0.5)


def test_loop_stays_on_circle_and_yaw_is_tangent() -> None:
    tr = make_trajectory(
        TrajectoryConfig(kind="loop", num_frames=20, radius_m=30.0, speed_m_per_s=6.0)
    )
    np.testing.assert_allclose(np.hypot(tr.east_m, tr.north_m), 30.0, atol=1e-9)
    d = np.stack([np.diff(tr.east_m), np.diff(tr.north_m)], axis=1)
    chord_heading = np.arctan2(d[:, 1], d[:, 0])
    mid_yaw = np.angle(np.exp(1j * tr.yaw_enu_rad[:-1]) + np.exp(1j * tr.yaw_enu_rad[1:]))
    np.testing.assert_allclose(np.angle(np.exp(1j * (chord_heading - mid_yaw))), 0.0, atol=1e-9)


def test_random_walk_is_deterministic_and_bounded() -> None:
    cfg = TrajectoryConfig(
        kind="random_walk", num_frames=200, speed_m_per_s=5.0, extent_m=50.0, seed=3
    )
    a, b = make_trajectory(cfg), make_trajectory(cfg)
    np.testing.assert_array_equal(a.east_m, b.east_m)
    assert np.max(np.hypot(a.east_m, a.north_m)) < 150.0
    assert np.all(np.abs(a.yaw_enu_rad) <= math.pi)
    other = make_trajectory(TrajectoryConfig(kind="random_walk", num_frames=200, seed=4))
    assert not np.allclose(other.east_m, a.east_m)


def test_fixed_yaw_option() -> None:
    tr = make_trajectory(TrajectoryConfig(kind="loop", yaw_follows_track=False, heading_rad=1.0))
    np.testing.assert_allclose(tr.yaw_enu_rad, 1.0)


def test_position_at_interpolates() -> None:
    tr = make_trajectory(TrajectoryConfig(kind="straight", num_frames=3, speed_m_per_s=2.0))
    p = tr.position_at(np.array([0.5]))
    assert p[0, 0] == pytest.approx(0.5 * (tr.east_m[0] + tr.east_m[1]))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "zigzag"}, "kind"),
        ({"num_frames": 0}, "num_frames"),
        ({"rate_hz": 0.0}, "rate_hz"),
        ({"speed_m_per_s": -1.0}, "speed_m_per_s"),
        ({"radius_m": float("nan")}, "radius_m"),
    ],
)
def test_config_validation_names_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TrajectoryConfig(**kwargs)  # type: ignore[arg-type]


def test_trajectory_rejects_unsorted_stamps() -> None:
    z = np.zeros(3)
    with pytest.raises(ValueError, match="increasing"):
        Trajectory(np.array([0.0, 2.0, 1.0]), z, z, z)
