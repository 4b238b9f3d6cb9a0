"""The gpsd fix source with a scripted client double (the real gpsd is in test/ros)."""

from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from cvgl_ros.core.types import GnssPrior
from cvgl_ros.ros.gpsd_source import GpsdConfig, GpsdSource, prior_from_gpsd_report

NS = SimpleNamespace


def _report(mode: int = 3, lat: float = 47.0, lon: float = 8.0, t: str = "T1", **err: float) -> NS:
    return NS(mode=mode, lat=lat, lon=lon, alt=420.0, time=t, error=dict(err))


class TestPriorFromReport:
    def test_no_fix_modes_give_none(self) -> None:
        for mode in (0, 1):
            assert prior_from_gpsd_report(_report(mode=mode), 1.0, 5.0, 0.5) is None
        assert prior_from_gpsd_report(_report(lat=math.nan), 1.0, 5.0, 0.5) is None
        assert prior_from_gpsd_report(_report(lat=0.0, lon=0.0), 1.0, 5.0, 0.5) is None

    def test_errors_map_to_sigmas(self) -> None:
        p = prior_from_gpsd_report(_report(x=3.92, y=1.96), 7.0, 5.0, 0.5)
        assert p is not None and p.stamp_s == 7.0 and p.alt_m is None  # MSL, not ellipsoidal
        np.testing.assert_allclose(np.diag(p.cov_en_m2), [4.0, 1.0])
        unknown = prior_from_gpsd_report(_report(mode=2), 7.0, 5.0, 0.5)
        assert unknown is not None
        np.testing.assert_allclose(np.diag(unknown.cov_en_m2), [25.0, 25.0])
        tiny = prior_from_gpsd_report(_report(x=0.01, y=0.01), 7.0, 5.0, 0.5)
        assert tiny is not None
        np.testing.assert_allclose(np.diag(tiny.cov_en_m2), [0.25, 0.25])


class ScriptedClient:
    """Stands in for the ``gpsd`` module: fails to connect N times, then serves reports."""

    def __init__(self, connect_failures: int, reports: list[Any]) -> None:
        self.connect_failures = connect_failures
        self.reports = list(reports)
        self.connect_times: list[float] = []
        self.gpsd_socket = None

    def connect(self, host: str, port: int) -> None:
        self.connect_times.append(time.monotonic())
        if len(self.connect_times) <= self.connect_failures:
            raise ConnectionRefusedError(f"{host}:{port} refused")

    def get_current(self) -> Any:
        if not self.reports:
            return _report(t="last")
        item = self.reports.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


def _run(client: ScriptedClient, until: Any, **cfg: Any) -> tuple[GpsdSource, list[GnssPrior]]:
    got: list[GnssPrior] = []
    lock = threading.Lock()

    def on_prior(p: GnssPrior) -> None:
        with lock:
            got.append(p)

    source = GpsdSource(
        GpsdConfig(poll_rate_hz=50.0, **cfg), on_prior, clock_s=time.time, client=client
    )
    source.start()
    deadline = time.monotonic() + 10.0
    while not until(source, got) and time.monotonic() < deadline:
        time.sleep(0.01)
    source.stop()
    return source, got


def test_reconnects_with_exponential_backoff() -> None:
    client = ScriptedClient(connect_failures=5, reports=[_report(t="A")])
    waits: list[float] = []

    def record(seconds: float) -> bool:
        waits.append(seconds)
        time.sleep(0.001)
        return False

    got: list[GnssPrior] = []
    source = GpsdSource(
        GpsdConfig(poll_rate_hz=50.0, reconnect_max_s=3.0),
        got.append,
        time.time,
        client=client,
        wait_s=record,
    )
    source.start()
    deadline = time.monotonic() + 30.0
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    source.stop()
    assert got and got[0].lat_deg == 47.0
    # 0.5 s doubling, capped at reconnect_max_s; then the poll period.
    assert waits[:5] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert waits[5] == pytest.approx(1 / 50.0)
    stats = source.stats()
    assert stats["errors"] == 5 and stats["connects"] == 1


def test_poll_errors_reconnect_and_no_fix_is_counted() -> None:
    reports = [
        _report(mode=1, t=""),
        UserWarning("GPS not active"),
        OSError("connection reset"),
        _report(t="B"),
        _report(t="B"),  # the same fix again: delivered once
        _report(t="C", lat=47.001),
    ]
    client = ScriptedClient(connect_failures=0, reports=reports)
    source, got = _run(client, lambda s, g: len(g) >= 2)
    assert [round(p.lat_deg, 3) for p in got[:2]] == [47.0, 47.001]
    stats = source.stats()
    assert stats["no_fix"] >= 2 and stats["errors"] == 1 and stats["connects"] == 2
    assert "connection reset" in stats["last_error"]


def test_consumer_exceptions_do_not_stop_the_poller() -> None:
    client = ScriptedClient(0, [_report(t="A"), _report(t="B")])
    calls: list[int] = []

    def bad_consumer(p: GnssPrior) -> None:
        calls.append(1)
        raise RuntimeError("consumer bug")

    source = GpsdSource(GpsdConfig(poll_rate_hz=50.0), bad_consumer, time.time, client=client)
    source.start()
    deadline = time.monotonic() + 5.0
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    source.stop()
    assert len(calls) >= 2


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="port"):
        GpsdConfig(port=0)
    with pytest.raises(ValueError, match="poll_rate_hz"):
        GpsdConfig(poll_rate_hz=0.0)
