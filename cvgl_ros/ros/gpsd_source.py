"""GNSS priors from gpsd, through the ``gpsd-py3`` client (module ``gpsd``).

A daemon thread connects to gpsd, polls the current fix at a fixed rate and hands each new
2-D/3-D fix to a callback as a :class:`~cvgl_ros.core.types.GnssPrior`. Connection failures
and protocol errors are retried with exponential backoff (0.5 s doubling up to a cap); a fix
with ``mode < 2`` is "no fix" and is counted, not delivered.

The fix is stamped with the receiving clock (the node's clock), not the GNSS time in the
report: image stamps and the node clock share a time base, the GNSS UTC time may not (replayed
logs, receivers without PPS). ``gpsd-py3`` keeps its connection in module globals, so one
process holds one gpsd connection; the source owns it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cvgl_ros.core.types import GnssPrior

_INITIAL_BACKOFF_S = 0.5
_SOCKET_TIMEOUT_S = 5.0
# gpsd's epx/epy are 95 % bounds per axis; 1.96 sigma for a normal error.
_EP95_TO_SIGMA = 1.0 / 1.96


@dataclass(frozen=True)
class GpsdConfig:
    """How to reach gpsd.

    Attributes:
        host: gpsd host name or address.
        port: gpsd TCP port.
        poll_rate_hz: polls per second.
        reconnect_max_s: cap of the reconnection backoff, seconds.
        default_sigma_m: horizontal standard deviation when gpsd reports no error estimate, m.
        min_sigma_m: floor of the horizontal standard deviation, metres.
    """

    host: str = "127.0.0.1"
    port: int = 2947
    poll_rate_hz: float = 5.0
    reconnect_max_s: float = 10.0
    default_sigma_m: float = 10.0
    min_sigma_m: float = 0.5

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host must not be empty")
        if not 1 <= int(self.port) <= 65535:
            raise ValueError(f"port must be in [1, 65535], got {self.port}")
        for name in ("poll_rate_hz", "reconnect_max_s", "default_sigma_m", "min_sigma_m"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0.0):
                raise ValueError(f"{name} must be > 0, got {v}")


def prior_from_gpsd_report(
    report: Any, stamp_s: float, default_sigma_m: float, min_sigma_m: float
) -> GnssPrior | None:
    """A ``gpsd.GpsResponse``-shaped report -> GNSS prior, or None without a 2-D/3-D fix.

    Args:
        report: object with ``mode``, ``lat``, ``lon`` and ``error`` (dict with
            ``x``/``y``: 95 % longitude/latitude errors in metres; 0 or absent = unknown).
        stamp_s: stamp to give the prior, seconds (the receiving clock).
        default_sigma_m: standard deviation when no error estimate is reported, metres.
        min_sigma_m: floor of the standard deviation, metres.
    """
    mode = int(getattr(report, "mode", 0) or 0)
    if mode < 2:
        return None
    lat, lon = float(report.lat), float(report.lon)
    if not (math.isfinite(lat) and math.isfinite(lon)) or (lat == 0.0 and lon == 0.0):
        return None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    error = getattr(report, "error", None) or {}
    sigmas = []
    for key in ("x", "y"):
        ep = float(error.get(key, 0.0) or 0.0)
        sigma = ep * _EP95_TO_SIGMA if math.isfinite(ep) and ep > 0.0 else default_sigma_m
        sigmas.append(max(sigma, min_sigma_m))
    # No altitude: gpsd-py3 reports the MSL altitude (0.0 when gpsd omits it), while the prior's
    # alt_m is ellipsoidal; the pose does not need it.
    return GnssPrior(
        lat_deg=lat,
        lon_deg=lon,
        cov_en_m2=np.diag([sigmas[0] ** 2, sigmas[1] ** 2]),
        stamp_s=stamp_s,
        alt_m=None,
    )


class GpsdSource:
    """Background gpsd poller delivering priors to ``on_prior``.

    Args:
        config: connection settings.
        on_prior: called from the poller thread with each new prior.
        clock_s: returns the current time in seconds on the images' clock.
        logger: where connection events are logged.
        client: the ``gpsd`` module (tests may inject a double); imported when None.
        wait_s: waits the given seconds or until stopped, returning True when stopped
            (tests inject a recorder); the stop event's ``wait`` by default.
    """

    def __init__(
        self,
        config: GpsdConfig,
        on_prior: Callable[[GnssPrior], Any],
        clock_s: Callable[[], float],
        logger: Any = None,
        client: Any = None,
        wait_s: Callable[[float], bool] | None = None,
    ) -> None:
        self._config = config
        self._on_prior = on_prior
        self._clock_s = clock_s
        self._log = logger or logging.getLogger(__name__)
        self._client = client
        self._stop = threading.Event()
        self._wait_s = wait_s or self._stop.wait
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._counters = {"connects": 0, "errors": 0, "no_fix": 0, "fixes": 0}
        self._connected = False
        self._last_error = ""
        self._last_fix_time: str | None = None

    def start(self) -> None:
        """Start polling (returns at once; connection happens in the thread).

        Raises:
            ImportError: ``gpsd-py3`` is not installed (extra ``gpsd``).
        """
        if self._client is None:
            try:
                self._client = importlib.import_module("gpsd")
            except ImportError as exc:
                raise ImportError(
                    "gnss_source 'gpsd' needs the gpsd-py3 package: pip install 'cvgl_ros[gpsd]'"
                ) from exc
        self._thread = threading.Thread(target=self._run, name="cvgl-gpsd", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop polling and close the connection."""
        self._stop.set()
        self._close()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def connected(self) -> bool:
        """True while a gpsd connection is open."""
        return self._connected

    def stats(self) -> dict[str, Any]:
        """Counters for diagnostics: connects, errors, no_fix, fixes, connected, last_error."""
        with self._lock:
            out: dict[str, Any] = dict(self._counters)
            out["connected"] = self._connected
            out["last_error"] = self._last_error
        return out

    def _count(self, key: str, error: str | None = None) -> None:
        with self._lock:
            self._counters[key] += 1
            if error is not None:
                self._last_error = error

    def _close(self) -> None:
        sock = getattr(self._client, "gpsd_socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._connected = False

    def _connect(self) -> None:
        cfg = self._config
        self._client.connect(host=cfg.host, port=int(cfg.port))
        sock = getattr(self._client, "gpsd_socket", None)
        if sock is not None:
            sock.settimeout(_SOCKET_TIMEOUT_S)
        self._connected = True
        self._count("connects")
        self._log.info(f"connected to gpsd at {cfg.host}:{cfg.port}")

    def _run(self) -> None:
        cfg = self._config
        backoff_s = _INITIAL_BACKOFF_S
        period_s = 1.0 / cfg.poll_rate_hz
        while not self._stop.is_set():
            if not self._connected:
                try:
                    self._connect()
                    backoff_s = _INITIAL_BACKOFF_S
                except Exception as exc:  # refused, timeout, garbage: back off and retry
                    self._count("errors", f"connect: {type(exc).__name__}: {exc}")
                    self._log.warning(
                        f"gpsd at {cfg.host}:{cfg.port} unavailable ({exc}); "
                        f"retrying in {backoff_s:.1f} s"
                    )
                    self._close()
                    self._wait_s(backoff_s)
                    backoff_s = min(2.0 * backoff_s, cfg.reconnect_max_s)
                    continue
            try:
                report = self._client.get_current()
            except UserWarning:  # gpsd-py3's "GPS not active": no receiver data yet
                self._count("no_fix")
                self._wait_s(period_s)
                continue
            except Exception as exc:  # connection lost or unexpected reply: reconnect
                self._count("errors", f"poll: {type(exc).__name__}: {exc}")
                self._log.warning(f"gpsd poll failed ({type(exc).__name__}: {exc}); reconnecting")
                self._close()
                continue
            self._deliver(report)
            self._wait_s(period_s)

    def _deliver(self, report: Any) -> None:
        cfg = self._config
        prior = prior_from_gpsd_report(
            report, self._clock_s(), cfg.default_sigma_m, cfg.min_sigma_m
        )
        if prior is None:
            self._count("no_fix")
            return
        # gpsd answers every poll with its latest fix; deliver a fix only once.
        fix_time = str(getattr(report, "time", "") or "")
        if fix_time and fix_time == self._last_fix_time:
            return
        self._last_fix_time = fix_time or None
        self._count("fixes")
        try:
            self._on_prior(prior)
        except Exception as exc:  # the consumer's problem must not kill the poller
            self._log.error(f"fix consumer raised {type(exc).__name__}: {exc}")
