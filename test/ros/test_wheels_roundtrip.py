"""The ROS 2 wheels work: two real rclpy nodes round-trip messages over loopback DDS."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseWithCovarianceStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = pytest.mark.ros


def _roundtrip(context: Any, topic: str, msg_type: Any, msg: Any, timeout_s: float = 20.0) -> Any:
    """Publish ``msg`` from one node and return what a second node receives."""
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub_node = rclpy.create_node("rt_pub", context=context)
    sub_node = rclpy.create_node("rt_sub", context=context)
    received: list[Any] = []
    sub_node.create_subscription(msg_type, topic, received.append, qos)
    pub = pub_node.create_publisher(msg_type, topic, qos)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(pub_node)
    executor.add_node(sub_node)
    try:
        deadline = time.monotonic() + timeout_s
        while not received and time.monotonic() < deadline:
            if pub.get_subscription_count() > 0:
                pub.publish(msg)
            executor.spin_once(timeout_sec=0.1)
        assert received, f"no {msg_type.__name__} received on {topic} within {timeout_s} s"
        return received[0]
    finally:
        executor.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()


def test_environment_is_confined_to_loopback() -> None:
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert os.environ["ROS_LOCALHOST_ONLY"] == "1"
    assert 0 <= int(os.environ["ROS_DOMAIN_ID"]) <= 101


def test_image_roundtrip_640x480(ros_context: Any) -> None:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    msg = Image()
    msg.header.frame_id = "camera_optical"
    msg.header.stamp.sec = 1700000000
    msg.header.stamp.nanosec = 123456789
    msg.height, msg.width = 480, 640
    msg.encoding = "rgb8"
    msg.step = 640 * 3
    msg.data = pixels.tobytes()
    got = _roundtrip(ros_context, "/cvgl_test/image", Image, msg)
    assert (got.height, got.width, got.encoding, got.step) == (480, 640, "rgb8", 1920)
    assert got.header.frame_id == "camera_optical"
    assert (got.header.stamp.sec, got.header.stamp.nanosec) == (1700000000, 123456789)
    back = np.frombuffer(bytes(got.data), dtype=np.uint8).reshape(480, 640, 3)
    np.testing.assert_array_equal(back, pixels)


def test_pose_with_covariance_roundtrip(ros_context: Any) -> None:
    msg = PoseWithCovarianceStamped()
    msg.header.frame_id = "map"
    msg.header.stamp.sec = 42
    msg.pose.pose.position.x = 12.5
    msg.pose.pose.position.y = -3.25
    msg.pose.pose.orientation.z = float(np.sin(0.3))
    msg.pose.pose.orientation.w = float(np.cos(0.3))
    cov = np.arange(36, dtype=np.float64) * 0.5 + 0.01
    msg.pose.covariance = cov.tolist()
    got = _roundtrip(ros_context, "/cvgl_test/pose", PoseWithCovarianceStamped, msg)
    assert got.header.frame_id == "map" and got.header.stamp.sec == 42
    assert (got.pose.pose.position.x, got.pose.pose.position.y) == (12.5, -3.25)
    assert got.pose.pose.orientation.z == pytest.approx(np.sin(0.3))
    np.testing.assert_array_equal(np.asarray(got.pose.covariance), cov)
