"""Quaternion helpers and the IMU buffer (slerp to an image stamp, refusals)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.attitude import (
    ImuBuffer,
    ImuSample,
    quaternion_xyzw_from_yaw,
    roll_pitch_from_quaternion,
    rotation_from_quaternion_xyzw,
    slerp_xyzw,
    yaw_from_quaternion_xyzw,
)
from cvgl_ros.core.errors import AttitudeUnavailableError, InvalidInputError
from cvgl_ros.core.mount import rot_x, rot_y, rot_z, rotation_from_rpy

SETTINGS = settings(max_examples=60, deadline=None)


def _angle_between(q0: tuple[float, ...], q1: tuple[float, ...]) -> float:
    return 2.0 * math.acos(min(1.0, abs(float(np.dot(q0, q1)))))


class TestImuBuffer:
    @given(
        st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4),
        st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4),
        st.floats(0.0, 1.0),
    )
    def test_slerp_moves_along_the_shorter_arc(
        self, a: list[float], b: list[float], w: float
    ) -> None:
        if np.linalg.norm(a) < 0.1 or np.linalg.norm(b) < 0.1:
            return
        q0 = tuple(np.asarray(a) / np.linalg.norm(a))
        q1 = tuple(np.asarray(b) / np.linalg.norm(b))
        q = slerp_xyzw(q0, q1, w)
        assert np.linalg.norm(q) == pytest.approx(1.0)
        total = _angle_between(q0, q1)
        assert _angle_between(q0, q) == pytest.approx(w * total, abs=2e-3)
        assert _angle_between(q, q1) == pytest.approx((1.0 - w) * total, abs=2e-3)

    def test_brackets_interpolates_and_refuses_the_rest(self) -> None:
        buf = ImuBuffer(8)
        with pytest.raises(AttitudeUnavailableError) as info:
            buf.sample_at(1.0, 0.5, 0.02)
        assert info.value.reason == "no_imu"
        q0, q1 = (0.0, 0.0, 0.0, 1.0), (math.sin(0.1), 0.0, 0.0, math.cos(0.1))  # roll 0.2
        buf.add(ImuSample(1.1, q1, 0.2))
        buf.add(ImuSample(1.0, q0, 0.1))  # out of order: inserted before
        mid = buf.sample_at(1.05, 0.5, 0.02)
        assert _angle_between(mid.orientation_xyzw, q0) == pytest.approx(0.1, abs=1e-9)
        assert mid.stamp_s == 1.05 and mid.yaw_sigma_rad == 0.2
        assert buf.sample_at(1.11, 0.5, 0.02).orientation_xyzw == q1  # within tolerance
        for stamp in (1.2, 0.9):  # beyond the newest / before the oldest
            with pytest.raises(AttitudeUnavailableError) as info:
                buf.sample_at(stamp, 0.5, 0.02)
            assert info.value.reason == "not_bracketed"
        buf.add(ImuSample(2.0, q0, 0.1))
        with pytest.raises(AttitudeUnavailableError) as info:
            buf.sample_at(1.5, 0.3, 0.02)  # samples 0.4 s and 0.5 s away
        assert info.value.reason == "gap"
        assert buf.sample_at(1.5, 0.5, 0.02).stamp_s == 1.5
        buf.add(ImuSample(-100.0, q0, 0.1))  # the clock jumped back: start over
        assert len(buf) == 1


@given(st.floats(min_value=-10.0, max_value=10.0))
def test_yaw_quaternion_round_trip(yaw: float) -> None:
    q = quaternion_xyzw_from_yaw(yaw)
    assert sum(v * v for v in q) == pytest.approx(1.0)
    back = yaw_from_quaternion_xyzw(q)
    assert math.remainder(back - yaw, 2 * math.pi) == pytest.approx(0.0, abs=1e-9)


@SETTINGS
@given(angle=st.floats(-math.pi, math.pi))
def test_quaternion_rotation_matches_axis_rotations(angle: float) -> None:
    s, c = math.sin(angle / 2), math.cos(angle / 2)
    np.testing.assert_allclose(
        rotation_from_quaternion_xyzw([s, 0, 0, c]), rot_x(angle), atol=1e-12
    )
    np.testing.assert_allclose(
        rotation_from_quaternion_xyzw([0, s, 0, c]), rot_y(angle), atol=1e-12
    )
    np.testing.assert_allclose(
        rotation_from_quaternion_xyzw([0, 0, 2 * s, 2 * c]), rot_z(angle), atol=1e-12
    )
    with pytest.raises(InvalidInputError, match="quaternion is a zero quaternion"):
        rotation_from_quaternion_xyzw([0.0, 0.0, 0.0, 0.0])


@SETTINGS
@given(
    roll=st.floats(-1.5, 1.5),
    pitch=st.floats(-1.5, 1.5),
    yaw=st.floats(-math.pi, math.pi),
)
def test_roll_pitch_yaw_of_a_quaternion_recover_the_rotation(
    roll: float, pitch: float, yaw: float
) -> None:
    """The three angle read-outs agree with ``Rz(yaw) Ry(pitch) Rx(roll)`` (REP-103)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    q = (
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    )
    np.testing.assert_allclose(
        rotation_from_quaternion_xyzw(q), rotation_from_rpy(roll, pitch, yaw), atol=1e-9
    )
    got_roll, got_pitch = roll_pitch_from_quaternion(q)
    assert got_roll == pytest.approx(roll, abs=1e-9)
    assert got_pitch == pytest.approx(pitch, abs=1e-9)
    assert math.remainder(yaw_from_quaternion_xyzw(q) - yaw, 2 * math.pi) == pytest.approx(
        0.0, abs=1e-9
    )
    with pytest.raises(InvalidInputError, match="orientation_xyzw must be 4 finite values"):
        roll_pitch_from_quaternion([0.0, 0.0, math.nan, 1.0])
    with pytest.raises(InvalidInputError, match="orientation_xyzw is a zero quaternion"):
        roll_pitch_from_quaternion([0.0, 0.0, 0.0, 0.0])
