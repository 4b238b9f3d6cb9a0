"""GNSS priors over time: a buffer of fixes interpolated (or extrapolated) to an image stamp.

Images and fixes come at different rates; the localizer needs the prior at the image's own
stamp, with a covariance that says how far the receiver may be off at that instant.
"""

from __future__ import annotations

import bisect

from cvgl_ros.core.errors import PriorUnavailableError
from cvgl_ros.core.stamped import insert_by_stamp, jumped_back
from cvgl_ros.core.types import FloatArray, GnssPrior


class FixBuffer:
    """Recent GNSS priors, sorted by stamp, with interpolation to an image stamp.

    Between two fixes the position is interpolated linearly and the covariance is the convex
    combination of theirs (GNSS errors are correlated over seconds, so averaging does not shrink
    them). Past the newest fix the position is extrapolated with the velocity of the last two
    fixes; with ``a = dt / dt_fixes`` the covariance becomes ``(1 + a)^2 C1 + a^2 C0``, the
    propagation of the linear extrapolation. A prior is refused when the fix nearest to the
    image stamp is more than ``max_age_s`` away.

    Args:
        capacity: fixes kept (oldest dropped first).

    Raises:
        ValueError: ``capacity`` < 1.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._fixes: list[GnssPrior] = []

    def __len__(self) -> int:
        return len(self._fixes)

    def clear(self) -> None:
        """Forget every fix (e.g. when the clock jumps back in a replay)."""
        self._fixes.clear()

    @property
    def latest(self) -> GnssPrior | None:
        """The newest fix, or None."""
        return self._fixes[-1] if self._fixes else None

    def add(self, prior: GnssPrior) -> None:
        """Insert a fix in stamp order (a fix with an existing stamp replaces it)."""
        insert_by_stamp(self._fixes, prior, self._capacity)

    def add_or_restart(self, prior: GnssPrior) -> None:
        """:meth:`add`, first forgetting every fix when the clock jumped back.

        A fix more than a minute older than the newest one means a looped bag or a reset
        simulation clock: the old fixes are then meaningless.
        """
        latest = self.latest
        if latest is not None and jumped_back(prior.stamp_s, latest.stamp_s):
            self.clear()
        self.add(prior)

    def prior_at(self, stamp_s: float, max_age_s: float) -> GnssPrior:
        """The GNSS prior at ``stamp_s`` (seconds, the fixes' clock).

        Args:
            stamp_s: the image stamp, seconds.
            max_age_s: the farthest the nearest fix may be from ``stamp_s``, seconds (the
                node's ``max_fix_age_s``); also the longest fix interval extrapolated over.

        Raises:
            PriorUnavailableError: ``reason`` ``no_fix`` (empty buffer) or ``stale_fix`` (the
                nearest fix is more than ``max_age_s`` from ``stamp_s``).
        """
        fixes = self._fixes
        if not fixes:
            raise PriorUnavailableError("no_fix", "no GNSS fix received yet")
        stamps = [f.stamp_s for f in fixes]
        i = bisect.bisect_left(stamps, stamp_s)
        nearest = min(abs(stamps[j] - stamp_s) for j in (i - 1, i) if 0 <= j < len(stamps))
        if nearest > max_age_s:
            raise PriorUnavailableError(
                "stale_fix",
                f"nearest GNSS fix is {nearest:.2f} s from the image (max_fix_age_s = "
                f"{max_age_s:.2f})",
            )
        if i < len(fixes) and stamps[i] == stamp_s:
            return fixes[i]
        if 0 < i < len(fixes):
            f0, f1 = fixes[i - 1], fixes[i]
            w = (stamp_s - f0.stamp_s) / (f1.stamp_s - f0.stamp_s)
            cov = (1.0 - w) * f0.cov_en_m2 + w * f1.cov_en_m2
            return _blend_priors(f0, f1, w, cov, stamp_s)
        if i == len(fixes) and len(fixes) >= 2:  # after the newest: extrapolate
            f0, f1 = fixes[-2], fixes[-1]
            dt_fix = f1.stamp_s - f0.stamp_s
            if 0.0 < dt_fix <= max_age_s:
                a = (stamp_s - f1.stamp_s) / dt_fix
                cov = (1.0 + a) ** 2 * f1.cov_en_m2 + a**2 * f0.cov_en_m2
                return _blend_priors(f0, f1, 1.0 + a, cov, stamp_s)
        nearest_fix = fixes[0] if i == 0 else fixes[-1]
        return GnssPrior(
            lat_deg=nearest_fix.lat_deg,
            lon_deg=nearest_fix.lon_deg,
            cov_en_m2=nearest_fix.cov_en_m2,
            stamp_s=stamp_s,
            alt_m=nearest_fix.alt_m,
            alt_var_m2=nearest_fix.alt_var_m2,
        )


def _blend_priors(
    f0: GnssPrior, f1: GnssPrior, w: float, cov_en_m2: FloatArray, stamp_s: float
) -> GnssPrior:
    """The prior ``f0 + w (f1 - f0)`` with the horizontal covariance ``cov_en_m2``.

    Latitude and longitude are blended linearly (the longitude difference wrapped to
    [-180, 180) degrees, the latitude clamped to the poles). The altitude variance follows the
    horizontal rule: the convex combination between the two fixes (0 <= w <= 1),
    ``w^2 v1 + (w - 1)^2 v0`` when extrapolating.

    Args:
        f0: the earlier fix.
        f1: the later fix.
        w: blend weight: 0 = ``f0``, 1 = ``f1``, > 1 extrapolates past ``f1``.
        cov_en_m2: (2, 2) float64, m^2, the (east, north) covariance of the result.
        stamp_s: the result's stamp, seconds.
    """
    dlon = (f1.lon_deg - f0.lon_deg + 180.0) % 360.0 - 180.0
    lon = (f0.lon_deg + w * dlon + 180.0) % 360.0 - 180.0
    lat = min(90.0, max(-90.0, f0.lat_deg + w * (f1.lat_deg - f0.lat_deg)))
    alt = alt_var = None
    if f0.alt_m is not None and f1.alt_m is not None:
        alt = f0.alt_m + w * (f1.alt_m - f0.alt_m)
        v0, v1 = f0.alt_var_m2, f1.alt_var_m2
        if v0 is not None and v1 is not None:
            alt_var = (
                (1.0 - w) * v0 + w * v1 if 0.0 <= w <= 1.0 else w**2 * v1 + (w - 1.0) ** 2 * v0
            )
    return GnssPrior(
        lat_deg=lat,
        lon_deg=lon,
        cov_en_m2=cov_en_m2,
        stamp_s=stamp_s,
        alt_m=alt,
        alt_var_m2=alt_var,
    )
