"""The node's image subscription QoS against best-effort and reliable publishers, and the
IMU-fallback counters in /diagnostics, with real rclpy nodes on loopback.

A reliable subscription does not match a best-effort publisher at all, and a best-effort one
lets a reliable publisher's lost fragments go unrepaired; ``image_qos: auto`` (the default)
starts best effort and follows the publishers on the topic. Components are test doubles:
these tests are about message delivery, not localization.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from cvgl_ros.core.types import AerialPatch, Correspondences  # noqa: E402
from cvgl_ros.ros.node import CvglNode  # noqa: E402

pytestmark = pytest.mark.ros

TOPIC = "/camera/image_raw"


class _NoMatches:
    def match(self, image: Any, patch: Any) -> Correspondences:
        return Correspondences(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))


class _Depth:
    def depth_at(self, image: Any, camera: Any, pixels: Any, gravity: Any) -> Any:
        return np.ones(len(pixels))


class _Patches:
    def patch_at(self, lat_deg: float, lon_deg: float) -> AerialPatch:
        return AerialPatch(
            image=np.zeros((64, 64, 3), np.uint8),
            m_per_px=1.0,
            center_lat_deg=lat_deg,
            center_lon_deg=lon_deg,
            valid_mask=np.ones((64, 64), bool),
            source_id="blank",
        )


COMPONENTS = {"matcher": _NoMatches(), "depth": _Depth(), "patches": _Patches()}


def _image(stamp_ns: int) -> Image:
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "cam"
    msg.height, msg.width, msg.encoding, msg.step = 24, 32, "rgb8", 96
    msg.data = bytes(24 * 96)
    return msg


class Rig:
    """The node under test and a test node that publishes images."""

    def __init__(self, context: Any, params: dict[str, Any]) -> None:
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.node = CvglNode(context=context, parameter_overrides=overrides, components=COMPONENTS)
        self.io = rclpy.create_node("qos_test_io", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.io)
        self.sent = 0

    def publisher(self, reliability: ReliabilityPolicy) -> Any:
        return self.io.create_publisher(Image, TOPIC, QoSProfile(depth=1, reliability=reliability))

    def spin_until(
        self, done: Callable[[], bool], timeout_s: float = 20.0, every: Any = None
    ) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done():
                return True
            if every is not None:
                self.sent += 1
                every.publish(_image(1_700_000_000_000_000_000 + self.sent * 10_000_000))
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def images_in(self) -> int:
        return int(self.node.pipeline.stats_snapshot()["images_in"])

    def node_subscription_reliability(self) -> Any:
        infos = [
            i
            for i in self.io.get_subscriptions_info_by_topic(TOPIC)
            if i.node_name == self.node.get_name()
        ]
        return infos[0].qos_profile.reliability if infos else None

    def diagnostics(self) -> dict[str, str]:
        status = self.node.diagnostics_reports()[0]
        return {str(k): str(v) for k, v in status.values.items()}

    def close(self) -> None:
        self.executor.shutdown()
        self.io.destroy_node()
        self.node.destroy_node()


@pytest.fixture
def make_rig(ros_context: Any) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**params: Any) -> Rig:
        rig = Rig(ros_context, params)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


def test_auto_qos_follows_best_effort_then_reliable_publishers(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    # Subscribed at once (visible to introspection), best effort: matches any publisher.
    assert rig.node.image_reliability == ReliabilityPolicy.BEST_EFFORT
    assert rig.spin_until(lambda: rig.node_subscription_reliability() is not None)
    best_effort = rig.publisher(ReliabilityPolicy.BEST_EFFORT)
    assert rig.spin_until(lambda: rig.images_in() > 0, every=best_effort)
    assert rig.node.image_reliability == ReliabilityPolicy.BEST_EFFORT
    assert rig.node_subscription_reliability() == ReliabilityPolicy.BEST_EFFORT

    rig.io.destroy_publisher(best_effort)
    reliable = rig.publisher(ReliabilityPolicy.RELIABLE)
    assert rig.spin_until(
        lambda: rig.node_subscription_reliability() == ReliabilityPolicy.RELIABLE
    ), "the node did not switch to a reliable subscription for a reliable publisher"
    before = rig.images_in()
    assert rig.spin_until(lambda: rig.images_in() > before, every=reliable)
    assert rig.diagnostics()["image_qos"] == "reliable"


def test_reliable_qos_refuses_best_effort_publishers_visibly(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(image_qos="reliable")
    best_effort = rig.publisher(ReliabilityPolicy.BEST_EFFORT)
    assert rig.spin_until(lambda: rig.node._image_qos_incompatible > 0, every=best_effort)
    assert rig.images_in() == 0  # DDS does not match them: no image ever arrives
    values = rig.diagnostics()
    assert int(values["image_qos_incompatible"]) >= 1 and values["image_qos"] == "reliable"


def test_best_effort_qos_takes_reliable_publishers(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(image_qos="best_effort")
    reliable = rig.publisher(ReliabilityPolicy.RELIABLE)
    assert rig.spin_until(lambda: rig.images_in() > 0, every=reliable)
    assert rig.node_subscription_reliability() == ReliabilityPolicy.BEST_EFFORT


def test_imu_fallback_is_counted_in_diagnostics(make_rig: Callable[..., Rig]) -> None:
    """use_imu with no IMU at all: the frame uses the static mount, counted and WARN."""
    rig = make_rig(use_imu=True)
    pipeline = rig.node.pipeline
    pipeline.on_camera_info(
        SimpleNamespace(width=32, height=24, k=[30.0, 0, 15.5, 0, 30.0, 11.5, 0, 0, 1], d=[])
    )
    fix = SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=1_700_000_000, nanosec=0)),
        status=SimpleNamespace(status=0),
        latitude=47.0,
        longitude=8.0,
        altitude=400.0,
        position_covariance=[4.0, 0, 0, 0, 4.0, 0, 0, 0, 9.0],
        position_covariance_type=2,
    )
    assert pipeline.on_fix(fix)
    pipeline.process_image(_image(1_700_000_000_000_000_000))
    rig.node._last_image_wall_s = time.monotonic()
    status = rig.node.diagnostics_reports()[0]
    values = {str(k): str(v) for k, v in status.values.items()}
    assert values["imu_fallback.no_imu"] == "1"
    assert values["last_attitude_source"] == "static_mount:no_imu"
    assert "IMU unusable" in status.message and status.level >= 1
