"""The GNSS fix buffer: interpolation / extrapolation to an image stamp and its covariance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvgl_ros.core.errors import PriorUnavailableError
from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.gnss import FixBuffer
from cvgl_ros.core.types import GnssPrior

LAT0, LON0 = 47.3977419, 8.5455938
ENU = LocalEnu(LAT0, LON0)


def _prior(east_m: float, north_m: float, stamp_s: float, sigma_m: float = 2.0) -> GnssPrior:
    lat, lon = ENU.to_wgs84(east_m, north_m)
    return GnssPrior(float(lat), float(lon), np.eye(2) * sigma_m**2, stamp_s, 400.0)


def _en(prior: GnssPrior) -> np.ndarray:
    e, n = ENU.to_en(prior.lat_deg, prior.lon_deg)
    return np.array([float(e), float(n)])


class TestFixBuffer:
    def test_empty_and_stale(self) -> None:
        buf = FixBuffer(8)
        with pytest.raises(PriorUnavailableError) as info:
            buf.prior_at(10.0, 1.0)
        assert info.value.reason == "no_fix"
        buf.add(_prior(0, 0, 10.0))
        with pytest.raises(PriorUnavailableError) as info:
            buf.prior_at(12.5, 1.0)
        assert info.value.reason == "stale_fix"
        with pytest.raises(PriorUnavailableError):
            buf.prior_at(8.0, 1.0)  # the fix is from the image's future, too far
        assert buf.prior_at(10.5, 1.0).stamp_s == 10.5

    def test_interpolates_between_fixes(self) -> None:
        buf = FixBuffer(8)
        buf.add(_prior(0.0, 0.0, 10.0, sigma_m=2.0))
        buf.add(_prior(10.0, -4.0, 11.0, sigma_m=4.0))
        p = buf.prior_at(10.25, 1.0)
        np.testing.assert_allclose(_en(p), [2.5, -1.0], atol=1e-3)
        np.testing.assert_allclose(p.cov_en_m2, np.eye(2) * (0.75 * 4 + 0.25 * 16))
        assert p.stamp_s == 10.25 and p.alt_m == pytest.approx(400.0)

    def test_extrapolates_with_inflated_covariance(self) -> None:
        buf = FixBuffer(8)
        buf.add(_prior(0.0, 0.0, 10.0))
        buf.add(_prior(2.0, 1.0, 10.5))
        p = buf.prior_at(10.75, 1.0)
        np.testing.assert_allclose(_en(p), [3.0, 1.5], atol=1e-3)
        a = 0.5
        np.testing.assert_allclose(p.cov_en_m2, np.eye(2) * 4.0 * ((1 + a) ** 2 + a**2))

    def test_altitude_variance_follows_the_horizontal_rule(self) -> None:
        buf = FixBuffer(8)
        lat, lon = ENU.to_wgs84(0.0, 0.0)
        for stamp, var in ((10.0, 4.0), (11.0, 16.0)):
            buf.add(GnssPrior(float(lat), float(lon), np.eye(2), stamp, 400.0, var))
        assert buf.prior_at(10.25, 1.0).alt_var_m2 == pytest.approx(0.75 * 4 + 0.25 * 16)
        a = 0.5  # past the newest fix: w = 1.5
        assert buf.prior_at(11.5, 1.0).alt_var_m2 == pytest.approx((1 + a) ** 2 * 16 + a**2 * 4)
        assert buf.prior_at(10.5, 1.0).alt_m == pytest.approx(400.0)

    def test_out_of_order_and_capacity(self) -> None:
        buf = FixBuffer(3)
        for t in (3.0, 1.0, 2.0, 4.0):
            buf.add(_prior(t, 0.0, t))
        assert len(buf) == 3
        assert buf.latest is not None and buf.latest.stamp_s == 4.0
        np.testing.assert_allclose(_en(buf.prior_at(2.5, 1.0)), [2.5, 0.0], atol=1e-3)

    @given(
        st.floats(min_value=-50, max_value=50),
        st.floats(min_value=-50, max_value=50),
        st.floats(min_value=0.0, max_value=1.0),
    )
    def test_interpolation_is_on_the_segment(self, e: float, n: float, w: float) -> None:
        buf = FixBuffer(4)
        buf.add(_prior(0.0, 0.0, 100.0))
        buf.add(_prior(e, n, 101.0))
        p = buf.prior_at(100.0 + w, 2.0)
        np.testing.assert_allclose(_en(p), [w * e, w * n], atol=1e-3)
        assert np.all(np.linalg.eigvalsh(p.cov_en_m2) > 0.0)
