"""Geodesy: exact WGS84 <-> local ENU and the angle conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.errors import InvalidInputError
from cvgl_ros.core.geodesy import (
    LocalEnu,
    ecef_to_wgs84,
    heading_deg_to_yaw_enu_rad,
    wgs84_to_ecef,
    wrap_angle_rad,
    yaw_enu_rad_to_heading_deg,
)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


@SETTINGS
@given(
    lat=st.floats(-80.0, 80.0),
    lon=st.floats(-179.0, 179.0),
    east=st.floats(-20_000.0, 20_000.0),
    north=st.floats(-20_000.0, 20_000.0),
)
def test_round_trip_en_wgs84(lat: float, lon: float, east: float, north: float) -> None:
    enu = LocalEnu(lat, lon)
    lat2, lon2 = enu.to_wgs84(east, north)
    e2, n2 = enu.to_en(lat2, lon2)
    assert abs(float(e2) - east) < 1e-6
    assert abs(float(n2) - north) < 1e-6


def test_origin_maps_to_zero_and_axes_point_east_north() -> None:
    enu = LocalEnu(48.137, 11.575)
    e, n = enu.to_en(48.137, 11.575)
    assert abs(float(e)) < 1e-9 and abs(float(n)) < 1e-9
    e, n = enu.to_en(48.138, 11.575)  # 0.001 deg north ~ 111.2 m
    assert abs(float(e)) < 1e-6
    assert float(n) == pytest.approx(111.19, abs=0.05)
    e, n = enu.to_en(48.137, 11.576)  # 0.001 deg east = N(lat) cos(lat) dlon
    lat = math.radians(48.137)
    prime_vertical_m = 6378137.0 / math.sqrt(1.0 - 0.00669437999014 * math.sin(lat) ** 2)
    expected_m = prime_vertical_m * math.cos(lat) * math.radians(0.001)
    assert float(e) == pytest.approx(expected_m, abs=0.01)
    assert abs(float(n)) < 0.01  # only the tiny curvature of the parallel


def test_vectorised_shapes() -> None:
    enu = LocalEnu(10.0, 20.0)
    lat = np.full((3, 4), 10.001)
    lon = np.full((3, 4), 20.001)
    e, n = enu.to_en(lat, lon)
    assert e.shape == (3, 4) and n.shape == (3, 4)
    lat2, lon2 = enu.to_wgs84(e, n)
    np.testing.assert_allclose(lat2, lat, atol=1e-11)
    np.testing.assert_allclose(lon2, lon, atol=1e-11)


def test_ecef_round_trip_with_height() -> None:
    lat, lon, h = ecef_to_wgs84(wgs84_to_ecef(-33.9, 151.2, 512.0))
    assert float(lat) == pytest.approx(-33.9, abs=1e-10)
    assert float(lon) == pytest.approx(151.2, abs=1e-10)
    assert float(h) == pytest.approx(512.0, abs=1e-6)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="origin_lat_deg"):
        LocalEnu(math.nan, 0.0)
    enu = LocalEnu(0.0, 0.0)
    with pytest.raises(InvalidInputError):
        enu.to_en(math.inf, 0.0)
    with pytest.raises(InvalidInputError):
        enu.to_en(91.0, 0.0)
    with pytest.raises(InvalidInputError):
        enu.to_wgs84(np.array([1.0, np.nan]), np.array([0.0, 0.0]))


def test_angle_conventions() -> None:
    assert float(heading_deg_to_yaw_enu_rad(0.0)) == pytest.approx(math.pi / 2)  # north
    assert float(heading_deg_to_yaw_enu_rad(90.0)) == pytest.approx(0.0)  # east
    assert float(heading_deg_to_yaw_enu_rad(180.0)) == pytest.approx(-math.pi / 2)
    assert float(yaw_enu_rad_to_heading_deg(0.0)) == pytest.approx(90.0)
    assert float(yaw_enu_rad_to_heading_deg(math.pi)) == pytest.approx(270.0)
    assert float(wrap_angle_rad(-math.pi)) == pytest.approx(math.pi)
    assert float(wrap_angle_rad(3 * math.pi / 2)) == pytest.approx(-math.pi / 2)


@SETTINGS
@given(st.floats(0.0, 359.999))
def test_heading_yaw_round_trip(heading: float) -> None:
    back = float(yaw_enu_rad_to_heading_deg(heading_deg_to_yaw_enu_rad(heading)))
    assert abs(((back - heading) + 180.0) % 360.0 - 180.0) < 1e-9
