"""The replay's node mode (``--through-node``): the real node under rclpy in this process, the
bag published into it over DDS (loopback) in lock-step, its outputs recorded.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.core.attitude import yaw_from_quaternion_xyzw
from cvgl_ros.core.types import PoseEstimate
from cvgl_ros.tools.bags import BagTopics, Pacer, header_stamp_ns, open_reader, role_connections
from cvgl_ros.tools.errors import ReplayError
from cvgl_ros.tools.outputs import (
    DIAGNOSTICS_OUT_TOPIC,
    FIX_OUT_TOPIC,
    POSE_OUT_TOPIC,
    FrameRecord,
    OutBagWriter,
    PriorTracker,
    en_yaw_block,
    run_summary,
)

LOGGER = logging.getLogger(__name__)


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def _to_rclpy(obj: Any, cls: Any) -> Any:
    """A rosbags-deserialised message -> an instance of the rclpy message class ``cls``.

    Used for ROS 1 bags (ROS 2 bags hand their CDR bytes to rclpy unchanged). Fields are
    copied by name; ROS 1 ``Time`` (``secs``/``nsecs``) maps to ``sec``/``nanosec``.
    """
    import array

    msg = cls()
    value: Any
    for name, ftype in cls.get_fields_and_field_types().items():
        if name in ("sec", "nanosec") and not hasattr(obj, name):
            value = getattr(obj, "secs" if name == "sec" else "nsecs", 0)
        elif hasattr(obj, name):
            value = getattr(obj, name)
        elif hasattr(obj, name.upper()):  # ROS 1 CameraInfo spells D, K, R, P
            value = getattr(obj, name.upper())
        else:
            continue  # e.g. ROS 1 Header.seq has no ROS 2 counterpart
        current = getattr(msg, name)
        if hasattr(current, "get_fields_and_field_types"):
            setattr(msg, name, _to_rclpy(value, type(current)))
        elif ftype.startswith("sequence<") and "/" in ftype:
            item_cls = _rclpy_class_for(ftype[len("sequence<") : -1])
            setattr(msg, name, [_to_rclpy(v, item_cls) for v in list(value)])
        elif isinstance(value, np.ndarray):
            if ftype == "sequence<uint8>" or ftype.startswith("uint8["):
                setattr(msg, name, array.array("B", value.astype(np.uint8).tobytes()))
            elif ftype.startswith("sequence<double>"):
                setattr(msg, name, array.array("d", value.astype(np.float64).tolist()))
            else:
                setattr(msg, name, value)
        else:
            setattr(msg, name, value)
    return msg


def _rclpy_class_for(type_name: str) -> Any:
    """``pkg/Type`` or ``pkg/msg/Type`` -> the rclpy message class."""
    import importlib

    parts = type_name.split("/")
    pkg, name = parts[0], parts[-1]
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


@dataclass
class _NodeObserver:
    """What the player node saw of the localization node's outputs."""

    poses: dict[int, Any] = field(default_factory=dict)
    fixes: dict[int, Any] = field(default_factory=dict)
    completed: int = -1
    failures: dict[str, int] = field(default_factory=dict)
    fixes_in: int = 0
    last_failure: str = ""
    diagnostics_seen: int = 0


def _has_subscriber(pub: Any) -> bool:
    return bool(pub.get_subscription_count() > 0)


def _at_least(obs: _NodeObserver, attr: str, value: int) -> bool:
    return bool(getattr(obs, attr) >= value)


def _has_key(mapping: dict[int, Any], key: int) -> bool:
    return key in mapping


def _parse_diagnostics(msg: Any, obs: _NodeObserver, lock: Any) -> None:
    for st in msg.status:
        values = {kv.key: kv.value for kv in st.values}
        if st.name.endswith(": localization") and "images_in" in values:
            failures = {
                k[len("failures.") :]: int(v)
                for k, v in values.items()
                if k.startswith("failures.")
            }
            done = int(values.get("poses_published", 0)) + int(values.get("publish_errors", 0))
            with lock:
                obs.failures = failures
                obs.completed = done + sum(failures.values())
                obs.last_failure = values.get("last_failure", "")
                obs.diagnostics_seen += 1
        elif st.name.endswith(": gnss") and "fixes_in" in values:
            with lock:
                obs.fixes_in = int(values["fixes_in"])


def _estimate_from_messages(stamp_ns: int, pose: Any, fix: Any) -> PoseEstimate:
    """An OK PoseEstimate rebuilt from the node's ~/pose and ~/fix messages."""
    from cvgl_ros.core.types import PoseStatus

    q = pose.pose.pose.orientation
    return PoseEstimate(
        status=PoseStatus.OK,
        lat_deg=float(fix.latitude) if fix is not None else math.nan,
        lon_deg=float(fix.longitude) if fix is not None else math.nan,
        east_m=float(pose.pose.pose.position.x),
        north_m=float(pose.pose.pose.position.y),
        yaw_enu_rad=yaw_from_quaternion_xyzw((q.x, q.y, q.z, q.w)),
        cov_en_yaw=en_yaw_block(pose.pose.covariance),
        stamp_s=stamp_ns * 1e-9,
    )


def replay_through_node(
    bag: str | Path,
    config: str | Path | None,
    overrides: Sequence[str],
    topics: BagTopics,
    *,
    rate: float = 0.0,
    max_frames: int | None = None,
    record_path: Path | None = None,
    timeout_s: float = 60.0,
) -> tuple[list[FrameRecord], dict[str, Any]]:
    """Run the real node in this process and publish the bag into it over DDS (loopback).

    Each image is published only after the node reported the previous one (its diagnostics,
    sped up to 50 Hz, count finished frames), so the node's keep-latest buffer never drops a
    frame and the result equals the pipeline mode's. Per-frame inlier counts are not published
    by the node and stay empty in ``poses.csv``.

    Raises:
        ReplayError: the node did not start, or did not answer an image within ``timeout_s``.
    """
    import threading

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix

    from cvgl_ros.core.types import PoseStatus
    from cvgl_ros.ros import constants as ros_const
    from cvgl_ros.ros.node import CvglNode, StartupError
    from cvgl_ros.ros.params import configs_from_params, merged_values

    # The player's publishers are reliable: a reliable subscription from the start, so that
    # no switch of image_qos auto can lose a lock-stepped image (--set image_qos:=... wins).
    values = merged_values(
        config, ["image_qos:=reliable", *overrides, "diagnostics_rate_hz:=50.0"]
    )
    configs = configs_from_params(values)  # fail early with the parameter's name
    settings = configs.node
    params = [
        Parameter(n, value=v)
        for n, v in values.items()
        if v is not None and not (isinstance(v, list | tuple) and len(v) == 0)
    ]
    tracker = PriorTracker(configs)
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    lock = threading.Lock()
    obs = _NodeObserver()
    records: list[FrameRecord] = []
    msg_counts: Counter[str] = Counter()
    bag_writer: OutBagWriter | None = None
    executor: Any = None
    node: Any = None
    player: Any = None
    spin_thread: threading.Thread | None = None
    t_start = time.perf_counter()
    try:
        try:
            node = CvglNode(context=ctx, parameter_overrides=params)
        except StartupError as exc:
            raise ReplayError(f"the node did not start: {exc}") from exc
        player = rclpy.create_node("cvgl_replay_player", context=ctx)
        if record_path is not None:
            bag_writer = OutBagWriter(
                record_path, settings.map_frame, settings.fix_frame_id or settings.base_frame
            )
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        image_cls = CompressedImage if settings.image_transport == "compressed" else Image
        image_topic = _absolute(ros_const.IMAGE_TOPIC) + (
            ros_const.COMPRESSED_SUFFIX if settings.image_transport == "compressed" else ""
        )
        pubs = {
            "image": player.create_publisher(image_cls, image_topic, reliable),
            "camera_info": player.create_publisher(
                CameraInfo, _absolute(ros_const.CAMERA_INFO_TOPIC), reliable
            ),
            "fix": player.create_publisher(NavSatFix, _absolute(ros_const.FIX_TOPIC), reliable),
            "imu": player.create_publisher(Imu, _absolute(ros_const.IMU_TOPIC), reliable),
        }
        classes = {"image": image_cls, "camera_info": CameraInfo, "fix": NavSatFix, "imu": Imu}
        out_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        pose_topic = node.resolve_topic_name(ros_const.POSE_TOPIC)
        fix_topic = node.resolve_topic_name(ros_const.FIX_OUT_TOPIC)

        def keep_by_stamp(by_stamp: dict[int, Any], topic: str) -> Callable[[Any], None]:
            """A subscription callback storing each message under its stamp (and recording)."""

            def on_output(msg: Any) -> None:
                stamp_ns = header_stamp_ns(msg)
                with lock:
                    by_stamp[stamp_ns] = msg
                if bag_writer is not None:
                    bag_writer.write_raw(topic, stamp_ns, serialize_message(msg))

            return on_output

        def on_diag(msg: Any) -> None:
            _parse_diagnostics(msg, obs, lock)
            if bag_writer is not None:
                bag_writer.write_raw(
                    DIAGNOSTICS_OUT_TOPIC, header_stamp_ns(msg), serialize_message(msg)
                )

        player.create_subscription(
            PoseWithCovarianceStamped,
            pose_topic,
            keep_by_stamp(obs.poses, POSE_OUT_TOPIC),
            out_qos,
        )
        player.create_subscription(
            NavSatFix, fix_topic, keep_by_stamp(obs.fixes, FIX_OUT_TOPIC), out_qos
        )
        player.create_subscription(DiagnosticArray, ros_const.DIAGNOSTICS_TOPIC, on_diag, out_qos)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        executor.add_node(player)
        spin_thread = threading.Thread(target=executor.spin, name="cvgl-replay-spin", daemon=True)
        spin_thread.start()

        def wait_for(pred: Callable[[], bool], what: str, limit_s: float) -> None:
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline:
                with lock:
                    if pred():
                        return
                time.sleep(0.002)
            raise ReplayError(f"timed out after {limit_s:.0f} s waiting for {what}")

        # Discovery: wait until the node's subscriptions see our publishers and vice versa.
        wait_for(lambda: obs.diagnostics_seen > 0, "the node's first diagnostics", timeout_s)
        needed = ["image", "fix"]
        needed += ["camera_info"] if settings.camera_model == "pinhole" else []
        needed += ["imu"] if settings.use_imu else []
        for role in needed:
            pub = pubs[role]
            wait_for(
                functools.partial(_has_subscriber, pub),
                f"the node to subscribe to {role}",
                10.0,
            )
        pacer = Pacer(rate)
        published: Counter[str] = Counter()
        # The node's own input counters (same process): the image is sent only after every
        # fix, IMU and CameraInfo message before it in the bag has reached the pipeline, since
        # DDS does not order messages across topics.
        node_pipeline = node.pipeline
        counter_keys = {"fix": "fixes_in", "imu": "imu_in", "camera_info": "camera_infos_in"}

        def inputs_taken() -> bool:
            snap = node_pipeline.stats_snapshot()
            return all(int(snap.get(k, 0)) >= published[r] for r, k in counter_keys.items())

        reader = open_reader(bag)
        try:
            by_topic, conns = role_connections(reader, topics)
            is_ros2 = bool(getattr(reader, "is2", True))
            for conn, t_ns, raw in reader.messages(connections=conns):
                role = by_topic[conn.topic]
                if role == "image" and conn.topic.endswith("/compressed") != (
                    settings.image_transport == "compressed"
                ):
                    raise ReplayError(
                        f"bag image topic {conn.topic} does not match the node's "
                        f"image_transport {settings.image_transport!r}"
                    )
                pacer.wait(t_ns)
                try:
                    if is_ros2:
                        msg = deserialize_message(bytes(raw), classes[role])
                    else:
                        msg = _to_rclpy(reader.deserialize(raw, conn.msgtype), classes[role])
                except Exception as exc:  # a corrupt message is skipped, not fatal
                    LOGGER.warning("skipping undecodable message on %s: %s", conn.topic, exc)
                    continue
                msg_counts[role] += 1
                if role == "fix":
                    tracker.on_fix(reader.deserialize(raw, conn.msgtype))
                if role != "image":
                    published[role] += 1
                    pubs[role].publish(msg)
                    continue
                # Lock-step: all inputs so far have reached the node, then one image at a time.
                try:
                    wait_for(inputs_taken, "the node to take the fixes/IMU/CameraInfo", 10.0)
                except ReplayError:
                    LOGGER.warning("the node received fewer inputs than were published")
                stamp_ns = header_stamp_ns(msg)
                with lock:
                    before_done = obs.completed
                    before_fail = dict(obs.failures)
                t0 = time.perf_counter()
                pubs["image"].publish(msg)
                target = before_done + 1
                wait_for(
                    functools.partial(_at_least, obs, "completed", target),
                    f"the node's answer to image {stamp_ns}",
                    timeout_s,
                )
                latency = time.perf_counter() - t0
                with lock:
                    after_fail = dict(obs.failures)
                    pose = obs.poses.get(stamp_ns)
                    fix = obs.fixes.get(stamp_ns)
                    reason = obs.last_failure
                if pose is None:
                    # The pose may still be in flight when the counters already moved on.
                    new_failures = [k for k in after_fail if after_fail[k] > before_fail.get(k, 0)]
                    if not new_failures:
                        wait_for(
                            functools.partial(_has_key, obs.poses, stamp_ns),
                            "the node's pose",
                            5.0,
                        )
                        with lock:
                            pose, fix = obs.poses.get(stamp_ns), obs.fixes.get(stamp_ns)
                if pose is not None:
                    if fix is None:
                        wait_for(
                            functools.partial(_has_key, obs.fixes, stamp_ns), "the node's fix", 5.0
                        )
                        with lock:
                            fix = obs.fixes.get(stamp_ns)
                    est = _estimate_from_messages(stamp_ns, pose, fix)
                else:
                    failed = sorted(k for k in after_fail if after_fail[k] > before_fail.get(k, 0))
                    status = PoseStatus(failed[0]) if failed else PoseStatus.ERROR
                    est = PoseEstimate(status=status, reasons=(reason,), stamp_s=stamp_ns * 1e-9)
                prior, prior_status = tracker.prior_at(stamp_ns * 1e-9)
                records.append(FrameRecord(stamp_ns, est, prior, prior_status, latency))
                if max_frames is not None and len(records) >= max_frames:
                    break
        finally:
            reader.close()
        stats = node.pipeline.stats_snapshot()
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if player is not None:
            player.destroy_node()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        if spin_thread is not None:
            spin_thread.join(timeout=5.0)
        if bag_writer is not None:
            bag_writer.close()
    wall = time.perf_counter() - t_start
    busy_s = sum(r.latency_s for r in records)
    extra = run_summary("node", bag, topics, msg_counts, len(records), wall, busy_s, stats)
    return records, extra
