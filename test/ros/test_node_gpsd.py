"""GNSS from gpsd: Debian's gpsd fed an NMEA log by ``gpsfake`` on 127.0.0.1.

Skipped with a reason when gpsfake/gpsd are not installed (``make debs`` installs them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cvgl_ros.core.types import GnssPrior
from cvgl_ros.ros.gpsd_source import GpsdConfig, GpsdSource

pytestmark = [
    pytest.mark.network_ns,
    pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning"),
]


def _nmea(body: str) -> str:
    checksum = reduce(lambda acc, ch: acc ^ ord(ch), body, 0)
    return f"${body}*{checksum:02X}\r\n"


def _ddmm(value_deg: float, is_lat: bool) -> tuple[str, str]:
    a = abs(value_deg)
    deg = int(a)
    minutes = (a - deg) * 60.0
    text = f"{deg:02d}{minutes:07.4f}" if is_lat else f"{deg:03d}{minutes:07.4f}"
    hemi = ("N" if value_deg >= 0 else "S") if is_lat else ("E" if value_deg >= 0 else "W")
    return text, hemi


def write_nmea_log(path: Path, lat_deg: float, lon_deg: float, epochs: int = 30) -> None:
    """An RMC + GGA + GSA log of a stationary 3-D fix at (lat_deg, lon_deg), 1 Hz."""
    lat, ns = _ddmm(lat_deg, True)
    lon, ew = _ddmm(lon_deg, False)
    lines = []
    for k in range(epochs):
        t = f"1200{k:02d}.00"
        lines.append(_nmea(f"GPRMC,{t},A,{lat},{ns},{lon},{ew},0.0,0.0,231126,,,A"))
        lines.append(_nmea(f"GPGGA,{t},{lat},{ns},{lon},{ew},1,08,0.9,250.0,M,-30.0,M,,"))
        lines.append(_nmea("GPGSA,A,3,01,02,03,04,05,06,07,08,,,,,1.5,0.9,1.2"))
    path.write_text("".join(lines))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def gpsfake(tmp_path: Path) -> Iterator[Callable[[float, float], int]]:
    """Start gpsd on 127.0.0.1 replaying a fix at (lat, lon); returns its port."""
    exe = shutil.which("gpsfake")
    if exe is None or not (shutil.which("gpsd") or Path("/usr/sbin/gpsd").exists()):
        pytest.skip("gpsfake/gpsd not installed (apt-get install gpsd gpsd-clients)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(lat: float, lon: float) -> int:
        log = tmp_path / f"fix{len(procs)}.nmea"
        write_nmea_log(log, lat, lon)
        port = _free_port()
        env = dict(os.environ, PATH=f"/usr/sbin:{os.environ.get('PATH', '')}")
        # gpsfake is a system-python script; -c paces sentences; the log loops until stopped.
        proc = subprocess.Popen(
            ["/usr/bin/python3", str(exe), "-P", str(port), "-c", "0.05", "-q", str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=tmp_path,
        )
        procs.append(proc)
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.skip(f"gpsfake exited at start-up ({proc.returncode}): {out[-300:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return port
            except OSError:
                time.sleep(0.1)
        pytest.fail("gpsfake's gpsd did not open its port within 60 s")

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5.0)


def _wait(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_gpsd_source_delivers_gpsfake_fixes(gpsfake: Callable[[float, float], int]) -> None:
    lat, lon = 47.3977419, 8.5455938
    port = gpsfake(lat, lon)
    priors: list[GnssPrior] = []
    lock = threading.Lock()

    def on_prior(p: GnssPrior) -> None:
        with lock:
            priors.append(p)

    source = GpsdSource(
        GpsdConfig(port=port, poll_rate_hz=20.0, default_sigma_m=4.0), on_prior, time.time
    )
    source.start()
    try:
        assert _wait(lambda: len(priors) >= 2, 60.0), f"no fixes from gpsd: {source.stats()}"
        # gpsd reports 2-D fixes (no altitude) until it has seen the GGA/GSA of a 3-D fix.
        assert _wait(lambda: any(p.alt_m is not None for p in priors), 30.0), source.stats()
    finally:
        source.stop()
    first = priors[0]
    # NMEA carries 1e-4 arc-minutes: about 0.2 m.
    assert first.lat_deg == pytest.approx(lat, abs=5e-6)
    assert first.lon_deg == pytest.approx(lon, abs=5e-6)
    np.testing.assert_allclose(first.cov_en_m2, np.eye(2) * 16.0)  # no epx/epy: default sigma
    assert abs(first.stamp_s - time.time()) < 30.0  # stamped on the receiving clock
    # GGA: 250 m above mean sea level, geoid 30 m below the ellipsoid -> 220 m ellipsoidal.
    altitudes = [p.alt_m for p in priors if p.alt_m is not None]
    assert altitudes == pytest.approx([220.0] * len(altitudes), abs=0.01)
    assert np.all(np.linalg.eigvalsh(first.cov_en_m2) > 0.0)
    stats = source.stats()
    assert stats["connects"] >= 1 and stats["fixes"] >= 2
    assert not source.connected  # stop() closed it


def test_gpsd_source_backs_off_while_gpsd_is_down() -> None:
    port = _free_port()  # nothing listens there
    source = GpsdSource(GpsdConfig(port=port, reconnect_max_s=1.0), lambda p: None, time.time)
    source.start()
    try:
        assert _wait(lambda: source.stats()["errors"] >= 2, 30.0)
    finally:
        source.stop()
    stats = source.stats()
    assert stats["connects"] == 0 and not stats["connected"]
    assert "connect" in stats["last_error"]


@pytest.mark.ros
@pytest.mark.data
def test_node_localizes_with_gpsd_fixes(
    ros_context: Any, shared_data: Path, gpsfake: Callable[[float, float], int]
) -> None:
    rclpy = pytest.importorskip("rclpy")
    from cvgl_node_scene import camera_info_msg, image_msg, make_scene
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from cvgl_ros.ros.node import CvglNode

    scene = make_scene(shared_data)
    # gpsd reports a position 7 m east and 6 m south of the truth: the pose must correct it.
    lat, lon = scene.latlon_at(scene.true_en_m[0] + 7.0, scene.true_en_m[1] - 6.0)
    port = gpsfake(lat, lon)
    params = scene.node_params(gnss_source="gpsd", gpsd_port=port, fix_default_sigma_m=8.0)
    node = CvglNode(
        context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )
    io = rclpy.create_node("gpsd_test_io", context=ros_context)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    image_pub = io.create_publisher(Image, "/camera/image_raw", qos)
    info_pub = io.create_publisher(CameraInfo, "/camera/camera_info", qos)
    poses: list[Any] = []
    io.create_subscription(PoseWithCovarianceStamped, "/cvgl_node/pose", poses.append, qos)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(io)
    try:
        deadline = time.monotonic() + 90.0
        next_pub = 0.0
        while not poses and time.monotonic() < deadline:
            if time.monotonic() > next_pub and image_pub.get_subscription_count() > 0:
                now_s = node.get_clock().now().nanoseconds * 1e-9
                info_pub.publish(camera_info_msg(scene, now_s))
                image_pub.publish(image_msg(scene.image, now_s))
                next_pub = time.monotonic() + 0.4
            executor.spin_once(timeout_sec=0.05)
        assert poses, f"no pose with gpsd fixes; diagnostics: {node.diagnostics_reports()}"
        p = poses[0].pose.pose.position
        assert p.x == pytest.approx(scene.true_en_m[0], abs=1.5)
        assert p.y == pytest.approx(scene.true_en_m[1], abs=1.5)
        gnss = next(r for r in node.diagnostics_reports() if r.name.endswith(": gnss"))
        assert gnss.values["source"] == "gpsd"
        assert int(gnss.values["gpsd.fixes"]) >= 1
        assert float(gnss.values["latest_lat_deg"]) == pytest.approx(lat, abs=5e-6)
    finally:
        executor.shutdown()
        io.destroy_node()
        node.destroy_node()
