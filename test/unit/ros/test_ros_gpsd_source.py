"""The gpsd fix source with a scripted client double (the real gpsd is in test/ros)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from cvgl_ros.core.types import GnssPrior
from cvgl_ros.ros.gpsd_source import (
    GpsdClient,
    GpsdConfig,
    GpsdSource,
    ellipsoidal_altitude_m,
    prior_from_gpsd_report,
)

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
        assert p is not None and p.stamp_s == 7.0 and p.alt_m is None  # alt is MSL: unused
        np.testing.assert_allclose(np.diag(p.cov_en_m2), [4.0, 1.0])
        unknown = prior_from_gpsd_report(_report(mode=2), 7.0, 5.0, 0.5)
        assert unknown is not None
        np.testing.assert_allclose(np.diag(unknown.cov_en_m2), [25.0, 25.0])
        tiny = prior_from_gpsd_report(_report(x=0.01, y=0.01), 7.0, 5.0, 0.5)
        assert tiny is not None
        np.testing.assert_allclose(np.diag(tiny.cov_en_m2), [0.25, 0.25])

    def test_ellipsoidal_altitude_only(self) -> None:
        report = _report(v=3.92)
        report.alt_hae_m = 470.5
        p = prior_from_gpsd_report(report, 7.0, 5.0, 0.5)
        assert p is not None and p.alt_m == 470.5
        assert p.alt_var_m2 == pytest.approx(4.0)  # epv 3.92 m at 95 % -> sigma 2 m
        report.mode = 2  # a 2-D fix has no altitude
        two_d = prior_from_gpsd_report(report, 7.0, 5.0, 0.5)
        assert two_d is not None and two_d.alt_m is None and two_d.alt_var_m2 is None
        assert ellipsoidal_altitude_m({"mode": 3, "altHAE": 471.0, "altMSL": 420.0}) == 471.0
        assert ellipsoidal_altitude_m({"mode": 3, "altMSL": 420.0, "geoidSep": 48.5}) == 468.5
        assert ellipsoidal_altitude_m({"mode": 3, "alt": 420.0, "geoidSep": 48.5}) == 468.5
        assert ellipsoidal_altitude_m({"mode": 3, "alt": 420.0}) is None  # MSL only
        assert ellipsoidal_altitude_m({"mode": 2, "altHAE": 471.0}) is None


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


def test_an_epoch_turning_3d_is_delivered_again_with_its_altitude() -> None:
    two_d = _report(mode=2, t="E")
    three_d = _report(mode=3, t="E")
    three_d.alt_hae_m = 468.5
    client = ScriptedClient(0, [two_d, three_d, three_d, _report(t="F")])
    _, got = _run(client, lambda s, g: len(g) >= 3)
    # E twice (2-D, then 3-D with its altitude), its repeat dropped, then F (no altitude).
    assert [p.alt_m for p in got[:3]] == [None, 468.5, None]


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


# --------------------------------------------------------------------------- timeouts


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A port whose accept queue is full: a TCP connect to it hangs in SYN_SENT."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    filler = socket.create_connection(("127.0.0.1", port), timeout=2.0)  # fills the queue
    try:
        yield port
    finally:
        filler.close()
        server.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (not gpsd, not closing)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


@pytest.mark.timeout(30)  # a guard against a hang; the assertions below are the test
@pytest.mark.parametrize("peer", ["unaccepting_port", "silent_port"])
def test_connect_gives_up_after_the_timeout(peer: str, request: pytest.FixtureRequest) -> None:
    port = request.getfixturevalue(peer)
    client = GpsdClient(SimpleNamespace(), timeout_s=0.4)
    t0 = time.monotonic()
    with pytest.raises(OSError, match="timed out"):
        client.connect("127.0.0.1", port)
    assert time.monotonic() - t0 < 3.0
    assert client.gpsd_socket is None


@pytest.mark.timeout(30)
def test_source_retries_a_gpsd_that_never_answers(silent_port: int) -> None:
    pytest.importorskip("gpsd")  # the default client wraps gpsd-py3
    source = GpsdSource(
        GpsdConfig(port=silent_port, timeout_s=0.3, reconnect_max_s=0.5), lambda p: None, time.time
    )
    t0 = time.monotonic()
    source.start()
    try:
        deadline = time.monotonic() + 10.0
        while source.stats()["errors"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = source.stats()
        assert stats["errors"] >= 2, f"connect did not give up and retry: {stats}"
        assert "timed out" in stats["last_error"]
        assert time.monotonic() - t0 < 5.0
    finally:
        source.stop()
    assert not source.connected


class _FakeGpsd:
    """A gpsd speaking the JSON protocol on 127.0.0.1: greeting, WATCH, then POLL answers."""

    def __init__(self, tpv: dict[str, object]) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.tpv = tpv
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn, conn.makefile("rw", encoding="utf-8", newline="\n") as stream:

            def send(message: dict[str, object]) -> None:
                stream.write(json.dumps(message) + "\n")
                stream.flush()

            send({"class": "VERSION", "release": "3.22"})
            assert stream.readline().startswith("?WATCH=")
            send({"class": "DEVICES", "devices": []})
            send({"class": "WATCH", "enable": True})
            while stream.readline().strip() == "?POLL;":
                send({"class": "POLL", "active": 1, "tpv": [self.tpv], "sky": [{}]})


@pytest.mark.timeout(30)
def test_client_speaks_gpsd_json_and_reads_the_ellipsoidal_height() -> None:
    pytest.importorskip("gpsd")  # GpsResponse parses the reports
    tpv = {
        "class": "TPV",
        "mode": 3,
        "time": "2026-11-23T12:00:00.000Z",
        "lat": 47.0,
        "lon": 8.0,
        "altHAE": 468.5,
        "altMSL": 420.0,
        "alt": 420.0,
        "geoidSep": 48.5,
        "epx": 3.92,
        "epy": 3.92,
        "epv": 5.88,
    }
    server = _FakeGpsd(tpv)
    got: list[GnssPrior] = []
    source = GpsdSource(GpsdConfig(port=server.port, timeout_s=2.0), got.append, time.time)
    assert source._client is None  # built at start: a GpsdClient around the gpsd module
    source.start()
    try:
        deadline = time.monotonic() + 10.0
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        source.stop()
        server.server.close()
    assert isinstance(source._client, GpsdClient) and got, source.stats()
    prior = got[0]
    assert (prior.lat_deg, prior.lon_deg) == (47.0, 8.0)
    assert prior.alt_m == 468.5  # the height above the ellipsoid, not the MSL 420 m
    assert prior.alt_var_m2 == pytest.approx(9.0)
    np.testing.assert_allclose(prior.cov_en_m2, np.eye(2) * 4.0)
