"""Quaternions and the IMU attitude over time.

Quaternions are ``(x, y, z, w)`` tuples (the ROS message order) of ``world_from_body``: the
body's orientation in the ENU world (REP-103/145). Yaw is ENU (0 = body +x facing east,
counter-clockwise, radians); roll and pitch are REP-103 fixed-axis angles
(``R = Rz(yaw) Ry(pitch) Rx(roll)``). The IMU buffer slerps the orientation to an image stamp.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cvgl_ros.core.errors import AttitudeUnavailableError, InvalidInputError
from cvgl_ros.core.stamped import insert_by_stamp, jumped_back
from cvgl_ros.core.types import FloatArray

QuaternionXyzw = tuple[float, float, float, float]

# --------------------------------------------------------------------------- quaternions


def yaw_from_quaternion_xyzw(q: Sequence[float]) -> float:
    """Yaw (about +z, rad; ENU, CCW from east for a REP-145 IMU) of an (x, y, z, w) quaternion."""
    x, y, z, w = (float(v) for v in q)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quaternion_xyzw_from_yaw(yaw_rad: float) -> QuaternionXyzw:
    """A rotation of ``yaw_rad`` about +z (roll = pitch = 0) as (x, y, z, w)."""
    return 0.0, 0.0, math.sin(0.5 * yaw_rad), math.cos(0.5 * yaw_rad)


def unit_quaternion_xyzw(q_xyzw: object, name: str = "quaternion") -> QuaternionXyzw:
    """``q_xyzw`` (x, y, z, w) checked and normalised to unit length.

    Raises:
        InvalidInputError: not 4 finite values, or a zero quaternion (the message names
            ``name``).
    """
    q = np.asarray(q_xyzw, dtype=np.float64).reshape(-1)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise InvalidInputError(f"{name} must be 4 finite values (x, y, z, w), got {q!r}")
    norm = float(np.linalg.norm(q))
    if norm < 1e-9:
        raise InvalidInputError(f"{name} is a zero quaternion")
    x, y, z, w = (float(v) for v in q / norm)
    return x, y, z, w


def roll_pitch_from_quaternion(orientation_xyzw: object) -> tuple[float, float]:
    """Roll and pitch (radians, REP-103 Z-Y-X) of ``world_from_body`` given as a quaternion.

    Raises:
        InvalidInputError: not 4 finite values or a zero quaternion.
    """
    x, y, z, w = unit_quaternion_xyzw(orientation_xyzw, "orientation_xyzw")
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
    return roll, pitch


def rotation_from_quaternion_xyzw(q_xyzw: object) -> FloatArray:
    """(3, 3) float64 rotation of a quaternion (x, y, z, w), normalised first.

    Raises:
        InvalidInputError: not 4 finite values, or a zero quaternion.
    """
    x, y, z, w = unit_quaternion_xyzw(q_xyzw)
    return np.array(
        [
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
            [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
            [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)],
        ],
        dtype=np.float64,
    )


def slerp_xyzw(q0: Sequence[float], q1: Sequence[float], w: float) -> QuaternionXyzw:
    """Spherical linear interpolation of unit quaternions (x, y, z, w), ``w`` in [0, 1].

    The shorter arc is taken (``q`` and ``-q`` are the same rotation); nearly equal
    quaternions are interpolated linearly and renormalised.
    """
    a = np.asarray(q0, dtype=np.float64)
    b = np.asarray(q1, dtype=np.float64)
    dot = float(np.dot(a, b))
    if dot < 0.0:
        b, dot = -b, -dot
    if dot > 0.9995:
        q = a + w * (b - a)
    else:
        theta = math.acos(min(dot, 1.0))
        q = (math.sin((1.0 - w) * theta) * a + math.sin(w * theta) * b) / math.sin(theta)
    q /= np.linalg.norm(q)
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


# --------------------------------------------------------------------------- IMU buffer


@dataclass(frozen=True)
class ImuSample:
    """One IMU orientation.

    Attributes:
        stamp_s: header stamp, seconds.
        orientation_xyzw: unit quaternion (x, y, z, w), body in the world frame (REP-145).
        yaw_sigma_rad: standard deviation of its yaw, radians.
    """

    stamp_s: float
    orientation_xyzw: QuaternionXyzw
    yaw_sigma_rad: float


class ImuBuffer:
    """Recent IMU orientations, sorted by stamp, interpolated (slerp) to an image stamp.

    The orientation at an image stamp comes from the two samples around it, each at most
    ``max_age_s`` away; an image stamp beyond the newest (or before the oldest) sample by up to
    ``max_extrapolation_s`` takes that sample. Anything else -- no sample, a gap, an IMU that
    lags the camera, an image older than the buffer -- is refused: holding the latest attitude
    for an image it does not belong to would tilt every lifted ray by the attitude change.

    Args:
        capacity: samples kept (oldest dropped first).

    Raises:
        ValueError: ``capacity`` < 2.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2, got {capacity}")
        self._capacity = capacity
        self._samples: list[ImuSample] = []

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, sample: ImuSample) -> None:
        """Insert a sample in stamp order (one with an existing stamp replaces it).

        A sample more than a minute older than the newest one means the clock jumped back
        (looped bag, reset simulation): the buffer then starts over.
        """
        samples = self._samples
        if samples and jumped_back(sample.stamp_s, samples[-1].stamp_s):
            samples.clear()
        insert_by_stamp(samples, sample, self._capacity)

    def sample_at(self, stamp_s: float, max_age_s: float, max_extrapolation_s: float) -> ImuSample:
        """The orientation at ``stamp_s`` (interpolated between the samples around it).

        Args:
            stamp_s: the image stamp, seconds.
            max_age_s: the farthest each of the two samples around ``stamp_s`` may be, seconds.
            max_extrapolation_s: how far beyond the newest (before the oldest) sample the
                stamp may lie and still take that sample, seconds.

        Raises:
            AttitudeUnavailableError: ``reason`` ``no_imu`` (no sample yet), ``not_bracketed``
                (the stamp lies more than ``max_extrapolation_s`` beyond the newest or before
                the oldest sample) or ``gap`` (a sample around the stamp is more than
                ``max_age_s`` away).
        """
        samples = self._samples
        if not samples:
            raise AttitudeUnavailableError("no_imu", "no IMU orientation received yet")
        i = bisect.bisect_left(samples, stamp_s, key=operator.attrgetter("stamp_s"))
        if i < len(samples) and samples[i].stamp_s == stamp_s:
            return samples[i]
        if i == len(samples) or i == 0:
            edge = samples[-1] if i else samples[0]
            dt = abs(stamp_s - edge.stamp_s)
            if dt <= max_extrapolation_s:
                return ImuSample(stamp_s, edge.orientation_xyzw, edge.yaw_sigma_rad)
            where = "after the newest" if i else "before the oldest"
            raise AttitudeUnavailableError(
                "not_bracketed",
                f"image stamp is {dt:.3f} s {where} IMU sample (imu_max_extrapolation_s = "
                f"{max_extrapolation_s:.3f}): late, missing or out-of-order IMU data",
            )
        s0, s1 = samples[i - 1], samples[i]
        if stamp_s - s0.stamp_s > max_age_s or s1.stamp_s - stamp_s > max_age_s:
            raise AttitudeUnavailableError(
                "gap",
                f"IMU samples around the image are {s1.stamp_s - s0.stamp_s:.3f} s apart "
                f"(max_imu_age_s = {max_age_s:.3f} on each side)",
            )
        w = (stamp_s - s0.stamp_s) / (s1.stamp_s - s0.stamp_s)
        return ImuSample(
            stamp_s,
            slerp_xyzw(s0.orientation_xyzw, s1.orientation_xyzw, w),
            max(s0.yaw_sigma_rad, s1.yaw_sigma_rad),
        )
