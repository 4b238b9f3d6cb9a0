"""The node publishes base_link, not the camera: extrinsics from parameters and from TF.

A nadir view rendered over the SYNTHETIC orthophoto at a known camera pose; the camera sits
at a known lever arm on the robot, so ``~/pose`` and ``~/fix`` must be the base's position
(camera minus the yaw-turned lever arm). TF comes from a stand-in ``tf2_ros`` module with the
real package's interface (``Buffer``, ``TransformListener``, ``TransformException``), since
tf2_ros is not installable without a ROS install.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from cvgl_node_scene import (  # noqa: E402
    Harness,
    Scene,
    camera_info_msg,
    fix_msg,
    image_msg,
    make_synthetic_scene,
)
from geometry_msgs.msg import TransformStamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.time import Time  # noqa: E402

from cvgl_ros.core.mount import BODY_FROM_OPTICAL_NADIR, rot_z  # noqa: E402
from cvgl_ros.ros.node import CvglNode, StartupError  # noqa: E402

pytestmark = pytest.mark.ros

T0_S = 1_700_000_000.0
LEVER_FLU_M = (2.0, -1.0, 0.5)  # camera 2 m ahead of, 1 m right of, 0.5 m above base_link


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return make_synthetic_scene(tmp_path_factory.mktemp("base_link_scene"))


@pytest.fixture
def make_harness(ros_context: Any) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(params: dict[str, Any]) -> Harness:
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        harness = Harness(
            ros_context, CvglNode(context=ros_context, parameter_overrides=overrides)
        )
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def _run(h: Harness, scene: Scene, done: Callable[[], bool]) -> None:
    sent = [0]

    def publish() -> None:
        stamp = T0_S + 0.25 * sent[0]
        sent[0] += 1
        h.info_pub.publish(camera_info_msg(scene, stamp))
        h.fix_pub.publish(fix_msg(scene.true_lat_deg, scene.true_lon_deg, stamp, sigma_m=5.0))
        h.image_pub.publish(image_msg(scene.image, stamp))

    assert h.spin_until(done, timeout_s=90.0, every=publish)


def _expected_base(scene: Scene, body_yaw_rad: float) -> np.ndarray:
    c, s = math.cos(body_yaw_rad), math.sin(body_yaw_rad)
    return scene.true_en_m - np.array([[c, -s], [s, c]]) @ np.array(LEVER_FLU_M[:2])


def _check_base_outputs(h: Harness, scene: Scene, body_yaw_rad: float) -> None:
    base = _expected_base(scene, body_yaw_rad)
    p = h.poses[0].pose.pose
    assert h.poses[0].header.frame_id == "map"
    # The camera is 2.2 m from base_link: 0.3 m tells base from camera.
    assert (p.position.x, p.position.y) == pytest.approx(tuple(base), abs=0.3)
    yaw = 2.0 * math.atan2(p.orientation.z, p.orientation.w)
    assert math.remainder(yaw - body_yaw_rad, 2 * math.pi) == pytest.approx(0.0, abs=0.03)
    cov = np.asarray(h.poses[0].pose.covariance).reshape(6, 6)
    assert np.all(np.linalg.eigvalsh(cov) > 0.0)
    fix = h.fixes[0]
    assert fix.header.frame_id == "base_link"
    east, north = scene.origin.to_en(fix.latitude, fix.longitude)
    assert (float(east), float(north)) == pytest.approx((p.position.x, p.position.y), abs=1e-3)
    np.testing.assert_allclose(
        np.asarray(fix.position_covariance).reshape(3, 3)[:2, :2], cov[:2, :2]
    )


def test_lever_arm_parameters_move_pose_and_fix_to_base_link(
    make_harness: Callable[..., Harness], scene: Scene
) -> None:
    x, y, z = LEVER_FLU_M
    h = make_harness(scene.node_params(camera_x_m=x, camera_y_m=y, camera_z_m=z))
    _run(h, scene, lambda: bool(h.poses) and bool(h.fixes))
    _check_base_outputs(h, scene, scene.true_yaw_rad)


class _FakeTf2:
    """A ``tf2_ros`` stand-in: the real names and call signatures, a scripted transform."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform
        self.available = False
        self.lookups: list[tuple[str, str, Any]] = []
        self.listeners: list[tuple[Any, Any]] = []
        fake = self

        class TransformException(Exception):  # noqa: N818 (tf2_ros's name)
            pass

        class LookupException(TransformException):
            pass

        class Buffer:
            def __init__(self, cache_time: Any = None, node: Any = None) -> None:
                pass

            def lookup_transform(
                self, target_frame: str, source_frame: str, time: Any, timeout: Any = None
            ) -> Any:
                fake.lookups.append((target_frame, source_frame, time))
                if not fake.available:
                    raise LookupException(
                        f'"{target_frame}" passed to lookupTransform argument target_frame '
                        "does not exist. "
                    )
                return fake.transform

        class TransformListener:
            def __init__(self, buffer: Any, node: Any, *, spin_thread: bool = False) -> None:
                fake.listeners.append((buffer, node))

        module = types.ModuleType("tf2_ros")
        module.Buffer = Buffer  # type: ignore[attr-defined]
        module.TransformListener = TransformListener  # type: ignore[attr-defined]
        module.TransformException = TransformException  # type: ignore[attr-defined]
        module.LookupException = LookupException  # type: ignore[attr-defined]
        self.module = module


def _transform(body_from_optical: np.ndarray) -> Any:
    from scipy.spatial.transform import Rotation

    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = "base_link", "camera_optical"
    t = msg.transform.translation
    t.x, t.y, t.z = LEVER_FLU_M
    q = Rotation.from_matrix(body_from_optical).as_quat()  # (x, y, z, w)
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return msg


def test_extrinsics_from_tf(
    make_harness: Callable[..., Harness], scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The camera is also yawed 0.3 rad left on the body: TF's rotation replaces camera_mount
    # and camera_*_rad, so the body's yaw is the image's yaw minus 0.3.
    mount_yaw_rad = 0.3
    tf2 = _FakeTf2(_transform(rot_z(mount_yaw_rad) @ BODY_FROM_OPTICAL_NADIR))
    monkeypatch.setitem(sys.modules, "tf2_ros", tf2.module)
    h = make_harness(scene.node_params(extrinsics_source="tf", camera_x_m=50.0))
    assert tf2.listeners and tf2.listeners[0][1] is h.node

    # Until TF has the transform, frames fail and say which transform is missing.
    sent = [0]
    assert h.spin_until(
        lambda: (
            h.localization_status("last_failure_status", "error") is not None
            and "no TF transform base_link <- camera_optical"
            in str(h.localization_status("last_failure_status", "error").message)
        ),
        timeout_s=60.0,
        every=lambda: _publish_once(h, scene, sent),
    )
    assert not h.poses
    tf2.available = True
    _run(h, scene, lambda: bool(h.poses) and bool(h.fixes))
    _check_base_outputs(h, scene, scene.true_yaw_rad - mount_yaw_rad)  # camera_x_m ignored
    target, source, stamp = tf2.lookups[-1]
    assert (target, source) == ("base_link", "camera_optical")
    assert isinstance(stamp, Time) and stamp.nanoseconds == 0  # the latest transform


def _publish_once(h: Harness, scene: Scene, sent: list[int]) -> None:
    # Each image gets its own stamp (the node drops repeated stamps), 30 s before the ones
    # _run publishes afterwards, so the stream moves forward.
    stamp = T0_S - 30.0 + 0.25 * sent[0]
    sent[0] += 1
    h.info_pub.publish(camera_info_msg(scene, stamp))
    h.fix_pub.publish(fix_msg(scene.true_lat_deg, scene.true_lon_deg, stamp))
    h.image_pub.publish(image_msg(scene.image, stamp))


def test_tf_without_tf2_ros_stops_startup(
    ros_context: Any, scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tf2_ros", None)  # import tf2_ros raises ImportError
    params = scene.node_params(extrinsics_source="tf")
    with pytest.raises(StartupError, match="tf2_ros"):
        CvglNode(
            context=ros_context,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
