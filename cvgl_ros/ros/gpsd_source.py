"""GNSS priors from gpsd (its JSON protocol; reports parsed by ``gpsd-py3``, module ``gpsd``).

A daemon thread connects to gpsd, polls the current fix at a fixed rate and hands each new
2-D/3-D fix to a callback as a :class:`~cvgl_ros.core.types.GnssPrior`. Connection failures
and protocol errors are retried with exponential backoff (0.5 s doubling up to a cap); a fix
with ``mode < 2`` is "no fix" and is counted, not delivered.

The connection is :class:`GpsdClient`'s own socket, not ``gpsd.connect()``: gpsd-py3 connects
and reads the greeting without a timeout, so a host that drops the SYN or a peer that accepts
and never answers blocks it forever. Here connecting, the greeting and every poll are bounded
by ``timeout_s``; the protocol (``VERSION`` greeting, ``?WATCH``, ``?POLL;``) and the report
fields are gpsd-py3's.

The fix is stamped with the receiving clock (the node's clock), not the GNSS time in the
report: image stamps and the node clock share a time base, the GNSS UTC time may not (replayed
logs, receivers without PPS). Altitude: gpsd's ``alt``/``altMSL`` is above mean sea level;
the prior carries the height above the WGS84 ellipsoid (``altHAE``, gpsd >= 3.20, or
``altMSL + geoidSep``) when gpsd reports one, and no altitude otherwise.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cvgl_ros.core.types import GnssPrior

_INITIAL_BACKOFF_S = 0.5
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
        timeout_s: longest wait for gpsd to accept the connection, greet or answer a poll,
            seconds.
        default_sigma_m: horizontal standard deviation when gpsd reports no error estimate, m.
        min_sigma_m: floor of the horizontal standard deviation, metres.
    """

    host: str = "127.0.0.1"
    port: int = 2947
    poll_rate_hz: float = 5.0
    reconnect_max_s: float = 10.0
    timeout_s: float = 5.0
    default_sigma_m: float = 10.0
    min_sigma_m: float = 0.5

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host must not be empty")
        if not 1 <= int(self.port) <= 65535:
            raise ValueError(f"port must be in [1, 65535], got {self.port}")
        for name in (
            "poll_rate_hz",
            "reconnect_max_s",
            "timeout_s",
            "default_sigma_m",
            "min_sigma_m",
        ):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0.0):
                raise ValueError(f"{name} must be > 0, got {v}")


def prior_from_gpsd_report(
    report: Any, stamp_s: float, default_sigma_m: float, min_sigma_m: float
) -> GnssPrior | None:
    """A ``gpsd.GpsResponse``-shaped report -> GNSS prior, or None without a 2-D/3-D fix.

    Args:
        report: object with ``mode``, ``lat``, ``lon`` and ``error`` (dict with
            ``x``/``y``/``v``: 95 % longitude/latitude/vertical errors in metres; 0 or absent
            = unknown), and optionally ``alt_hae_m`` (height above the WGS84 ellipsoid, set by
            :class:`GpsdClient`; gpsd-py3's own ``alt`` is above mean sea level and unused).
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
    # The prior's altitude is ellipsoidal: gpsd's height above the ellipsoid when it gave one,
    # never gpsd-py3's ``alt`` (mean sea level; 0.0 when gpsd omits it).
    alt = getattr(report, "alt_hae_m", None)
    alt_m = float(alt) if alt is not None and math.isfinite(float(alt)) and mode >= 3 else None
    alt_var = None
    epv = float(error.get("v", 0.0) or 0.0)
    if alt_m is not None and math.isfinite(epv) and epv > 0.0:
        alt_var = (epv * _EP95_TO_SIGMA) ** 2
    return GnssPrior(
        lat_deg=lat,
        lon_deg=lon,
        cov_en_m2=np.diag([sigmas[0] ** 2, sigmas[1] ** 2]),
        stamp_s=stamp_s,
        alt_m=alt_m,
        alt_var_m2=alt_var,
    )


def _read_message(stream: Any) -> dict[str, Any]:
    """One gpsd JSON line (the socket's timeout bounds the wait)."""
    line = stream.readline()
    if not line:
        raise ConnectionError("gpsd closed the connection")
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ConnectionError(f"unexpected gpsd message: {line.strip()[:80]!r}")
    return message


def ellipsoidal_altitude_m(tpv: dict[str, Any]) -> float | None:
    """Height above the WGS84 ellipsoid of a gpsd TPV report, metres, or None.

    ``altHAE`` (gpsd >= 3.20), else ``altMSL`` (or the older ``alt``) plus the geoid
    separation ``geoidSep``; None without a 3-D fix or without one of these.
    """
    if int(tpv.get("mode", 0) or 0) < 3:
        return None
    if isinstance(tpv.get("altHAE"), int | float):
        return float(tpv["altHAE"])
    msl = tpv.get("altMSL", tpv.get("alt"))
    sep = tpv.get("geoidSep")
    if isinstance(msl, int | float) and isinstance(sep, int | float):
        return float(msl) + float(sep)
    return None


class GpsdClient:
    """One gpsd connection with a timeout on connecting, the greeting and every poll.

    The interface of the ``gpsd`` module that :class:`GpsdSource` uses (``connect``,
    ``get_current``, ``gpsd_socket``), on a socket of its own instead of gpsd-py3's module
    globals, which it connects without a timeout.

    Args:
        module: the ``gpsd`` (gpsd-py3) module; its ``GpsResponse`` parses the reports.
        timeout_s: longest wait for any one step, seconds.
    """

    def __init__(self, module: Any, timeout_s: float) -> None:
        if not (math.isfinite(timeout_s) and timeout_s > 0.0):
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._module = module
        self._timeout_s = float(timeout_s)
        self.gpsd_socket: socket.socket | None = None
        self._stream: Any = None

    def connect(self, host: str, port: int) -> None:
        """Connect, read gpsd's ``VERSION`` greeting and enable watching (gpsd-py3's handshake).

        Raises:
            OSError: refused, unreachable, or ``TimeoutError`` after ``timeout_s``.
            ConnectionError: the peer is not gpsd.
        """
        self.close()
        sock = socket.create_connection((host, int(port)), timeout=self._timeout_s)
        try:
            stream = sock.makefile(mode="rw", encoding="utf-8", newline="\n")
            welcome = _read_message(stream)
            if welcome.get("class") != "VERSION":
                raise ConnectionError(
                    f"{host}:{port} greeted with {welcome.get('class')!r}, not gpsd's VERSION"
                )
            stream.write('?WATCH={"enable":true}\n')
            stream.flush()
            for _ in range(2):  # DEVICES and WATCH
                _read_message(stream)
        except BaseException:
            sock.close()
            raise
        self.gpsd_socket, self._stream = sock, stream

    def get_current(self) -> Any:
        """Poll the current fix: a ``gpsd.GpsResponse`` with ``alt_hae_m`` (see above).

        Raises:
            UserWarning: gpsd-py3's "GPS not active" (no receiver data yet).
            OSError: the connection broke or timed out; ConnectionError: not connected or an
                unexpected reply.
        """
        if self._stream is None:
            raise ConnectionError("not connected to gpsd")
        self._stream.write("?POLL;\n")
        self._stream.flush()
        response = _read_message(self._stream)
        if response.get("class") != "POLL":
            raise ConnectionError(f"unexpected gpsd message {response.get('class')!r}")
        report = self._module.GpsResponse.from_json(response)
        tpvs = response.get("tpv") or [{}]
        report.alt_hae_m = ellipsoidal_altitude_m(tpvs[-1])
        return report

    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        sock, self.gpsd_socket, self._stream = self.gpsd_socket, None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


class GpsdSource:
    """Background gpsd poller delivering priors to ``on_prior``.

    Args:
        config: connection settings.
        on_prior: called from the poller thread with each new prior.
        clock_s: returns the current time in seconds on the images' clock.
        logger: where connection events are logged.
        client: ``connect(host, port)`` / ``get_current()`` / ``gpsd_socket`` (tests may
            inject a double); a :class:`GpsdClient` on the ``gpsd`` module when None.
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
        self._last_fix_key: str | None = None

    def start(self) -> None:
        """Start polling (returns at once; connection happens in the thread).

        Raises:
            ImportError: ``gpsd-py3`` is not installed (extra ``gpsd``).
        """
        if self._client is None:
            try:
                module = importlib.import_module("gpsd")
            except ImportError as exc:
                raise ImportError(
                    "gnss_source 'gpsd' needs the gpsd-py3 package: pip install 'cvgl_ros[gpsd]'"
                ) from exc
            self._client = GpsdClient(module, self._config.timeout_s)
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
        close = getattr(self._client, "close", None)
        if callable(close):
            close()
        else:
            sock = getattr(self._client, "gpsd_socket", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._connected = False

    def _connect(self) -> None:
        cfg = self._config
        self._client.connect(host=cfg.host, port=int(cfg.port))
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
        # gpsd answers every poll with its latest fix; deliver a fix only once. The same epoch
        # turning from 2-D into 3-D (GGA after RMC) is new: it brings the altitude.
        fix_time = str(getattr(report, "time", "") or "")
        fix_key = f"{fix_time}|{prior.alt_m is not None}" if fix_time else None
        if fix_key is not None and fix_key == self._last_fix_key:
            return
        self._last_fix_key = fix_key
        self._count("fixes")
        try:
            self._on_prior(prior)
        except Exception as exc:  # the consumer's problem must not kill the poller
            self._log.error(f"fix consumer raised {type(exc).__name__}: {exc}")
