"""``cvgl-ros replay``: run a recorded bag through the localizer and write what it produced.

Reads ROS 2 bags (mcap, sqlite3) and ROS 1 bags with the ``rosbags`` package (no ROS install
needed). Two modes give the same poses on the same bag:

- default: every message goes straight into :class:`~cvgl_ros.ros.pipeline.Pipeline`, the
  object the node runs, as fast as possible (or at ``--rate`` times real time);
- ``--through-node``: the real node (:mod:`cvgl_ros.ros.node`) runs in this process under
  rclpy; the bag is published into it over DDS (loopback) and its outputs are recorded. Images
  are sent in lock-step (the next image only after the node reported the previous one), so no
  frame is dropped by the node's keep-latest buffer and both modes see the same frames.

Outputs in ``--out``:

- ``poses.csv``: one row per image (columns :data:`~cvgl_ros.tools.eval.POSE_COLUMNS`);
  ``status`` is ``ok`` or the failure reason; pose fields are empty unless ``ok``;
- ``prior.csv``: the GNSS prior at each image (the fix buffer's interpolation, as the
  pipeline sees it), the baseline for ``cvgl-ros eval``;
- ``summary.json``: counts per status, per-stage latency percentiles, throughput, message
  counts and the pipeline's counters;
- ``--out-bag``: ``out_bag/`` (mcap) with the published ``~/pose``, ``~/fix`` and
  ``/diagnostics`` messages for Foxglove / RViz.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.core.types import GnssPrior, PoseEstimate
from cvgl_ros.tools.eval import POSE_COLUMNS, PRIOR_COLUMNS

LOGGER = logging.getLogger(__name__)

DEFAULT_TOPICS: dict[str, str] = {
    "image": "/camera/image_raw",
    "camera_info": "/camera/camera_info",
    "fix": "/gnss/fix",
    "imu": "/imu/data",
}
POSE_OUT_TOPIC = "/cvgl_node/pose"
FIX_OUT_TOPIC = "/cvgl_node/fix"
DIAGNOSTICS_OUT_TOPIC = "/diagnostics"


class ReplayError(RuntimeError):
    """The bag cannot be replayed (unreadable, or none of the needed topics)."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class FrameRecord:
    """What one image produced, in the form written to ``poses.csv`` / ``prior.csv``.

    Attributes:
        stamp_ns: image header stamp, nanoseconds.
        estimate: the pipeline's result.
        prior: the GNSS prior at the image stamp (None when there was none).
        prior_status: ``ok`` or why there was no prior.
        latency_s: wall time from handing the image over to having the result, seconds.
    """

    stamp_ns: int
    estimate: PoseEstimate
    prior: GnssPrior | None
    prior_status: str
    latency_s: float


def published_covariance(cov_en_yaw: Any) -> Any:
    """The (east, north, yaw) covariance as the node publishes it (variances floored).

    Both replay modes write this, so ``poses.csv`` says what a consumer of ``~/pose`` gets.
    """
    from cvgl_ros.ros import convert

    return _en_yaw_block(convert.pose_covariance_6x6(cov_en_yaw))


def _en_yaw_block(cov6: Any) -> Any:
    """The (east, north, yaw) 3x3 block of a row-major 6x6 pose covariance (36 values)."""
    idx = [0, 1, 5]
    return np.asarray(cov6, dtype=np.float64).reshape(6, 6)[np.ix_(idx, idx)]


def pose_row(rec: FrameRecord) -> list[str]:
    """One ``poses.csv`` row (pose fields empty unless the status is ok)."""
    e = rec.estimate
    row = [str(rec.stamp_ns), e.status.value]
    if e.ok:
        # A pose without a covariance (a baseline that gives none) leaves those fields empty.
        has_cov = bool(np.all(np.isfinite(e.cov_en_yaw)))
        cov = published_covariance(e.cov_en_yaw) if has_cov else np.full((3, 3), np.nan)
        row += [
            f"{e.lat_deg:.10f}",
            f"{e.lon_deg:.10f}",
            f"{e.east_m:.4f}",
            f"{e.north_m:.4f}",
            f"{e.yaw_enu_rad:.6f}",
            f"{cov[0, 0]:.6g}",
            f"{cov[0, 1]:.6g}",
            f"{cov[1, 1]:.6g}",
            f"{cov[2, 2]:.6g}",
            str(int(e.inliers)),
            f"{e.inlier_ratio:.4f}",
        ]
    else:
        row += [""] * 9
        row += [str(int(e.inliers)) if e.inliers else "", f"{e.inlier_ratio:.4f}"]
    row.append(f"{1e3 * rec.latency_s:.2f}")
    return row


def prior_row(rec: FrameRecord, enu_origin: Any | None = None) -> list[str]:
    """One ``prior.csv`` row."""
    p = rec.prior
    if p is None:
        return [str(rec.stamp_ns), rec.prior_status, "", "", "", "", "", ""]
    c = p.cov_en_m2
    age = rec.stamp_ns * 1e-9 - p.stamp_s
    return [
        str(rec.stamp_ns),
        "ok",
        f"{p.lat_deg:.10f}",
        f"{p.lon_deg:.10f}",
        f"{c[0, 0]:.6g}",
        f"{c[0, 1]:.6g}",
        f"{c[1, 1]:.6g}",
        f"{age:.3f}",
    ]


def write_outputs(
    out: Path,
    records: Sequence[FrameRecord],
    extra_summary: dict[str, Any],
) -> dict[str, Any]:
    """Write ``poses.csv``, ``prior.csv`` and ``summary.json``; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "poses.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(POSE_COLUMNS)
        for rec in records:
            w.writerow(pose_row(rec))
    with (out / "prior.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(PRIOR_COLUMNS)
        for rec in records:
            w.writerow(prior_row(rec))
    counts = Counter(r.estimate.status.value for r in records)
    stages: dict[str, list[float]] = {}
    for r in records:
        for stage, sec in r.estimate.timings_s.items():
            if math.isfinite(sec):
                stages.setdefault(stage, []).append(1e3 * sec)
        stages.setdefault("frame_wall", []).append(1e3 * r.latency_s)
    latency = {
        stage: {
            "n": len(v),
            "mean_ms": float(np.mean(v)),
            "p50_ms": float(np.percentile(v, 50)),
            "p90_ms": float(np.percentile(v, 90)),
            "p99_ms": float(np.percentile(v, 99)),
            "max_ms": float(np.max(v)),
        }
        for stage, v in sorted(stages.items())
        if v
    }
    summary = {
        "frames": len(records),
        "status_counts": dict(sorted(counts.items())),
        "availability": (counts.get("ok", 0) / len(records)) if records else 0.0,
        "latency_ms": latency,
        **extra_summary,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


# --------------------------------------------------------------------------- reading bags


@dataclass
class BagTopics:
    """Topic names to read (resolved against the bag's connections)."""

    image: str = DEFAULT_TOPICS["image"]
    camera_info: str = DEFAULT_TOPICS["camera_info"]
    fix: str = DEFAULT_TOPICS["fix"]
    imu: str = DEFAULT_TOPICS["imu"]
    resolved: dict[str, str] = field(default_factory=dict)


def _open_reader(bag: str | Path) -> Any:
    from rosbags.highlevel import AnyReader

    path = Path(bag)
    if not path.exists():
        raise ReplayError(f"bag not found: {path}")
    try:
        reader = AnyReader([path])
        reader.open()
    except Exception as exc:  # rosbags raises several types for unreadable bags
        raise ReplayError(f"cannot open bag {path}: {exc}") from exc
    return reader


_ROLE_OPTIONS = {
    "image": "--image-topic",
    "camera_info": "--camera-info-topic",
    "fix": "--fix-topic",
    "imu": "--imu-topic",
}


def resolve_topics(
    available: set[str], topics: BagTopics, required: Sequence[str] = ("image",)
) -> dict[str, str]:
    """Map roles (image, camera_info, fix, imu) to topics present in the bag.

    The image falls back to ``<image>/compressed``.

    Args:
        available: the bag's topics.
        topics: the topic of each role.
        required: roles the bag must have.

    Raises:
        ReplayError: a required role's topic is not in the bag (the message lists the bag's
            topics and the option that names the role's topic).
    """
    resolved: dict[str, str] = {}
    for role in ("image", "camera_info", "fix", "imu"):
        name = getattr(topics, role)
        if name in available:
            resolved[role] = name
        elif role == "image" and f"{name}/compressed" in available:
            resolved[role] = f"{name}/compressed"
    for role in required:
        if role not in resolved:
            also = " (or its /compressed)" if role == "image" else ""
            raise ReplayError(
                f"bag has no {role.replace('_', ' ')} topic {getattr(topics, role)!r}{also}; "
                f"topics: {sorted(available)} (choose one with {_ROLE_OPTIONS[role]})"
            )
    if "fix" not in resolved:
        LOGGER.warning("bag has no fix topic %r: every frame will be no_fix", topics.fix)
    return resolved


def check_bag(bag: str | Path, topics: BagTopics, required: Sequence[str]) -> None:
    """Open the bag and check that it has the ``required`` roles' topics (fills ``resolved``).

    Raises:
        ReplayError: the bag is missing, unreadable, or lacks a required topic.
    """
    reader = _open_reader(bag)
    try:
        topics.resolved = resolve_topics({c.topic for c in reader.connections}, topics, required)
    finally:
        reader.close()


def required_roles(configs: Any) -> tuple[str, ...]:
    """Roles a bag must have for the node configuration: image, fix, and CameraInfo (pinhole).

    Without fixes every frame would be ``no_fix`` and without CameraInfo every pinhole frame
    an error: a replay that can only fail is refused up front. A missing IMU is allowed: the
    pipeline falls back to the static mount with an inflated covariance and counts it.
    """
    roles = ["image", "fix"]
    if configs.node.camera_model == "pinhole":
        roles.append("camera_info")
    return tuple(roles)


def iter_bag(bag: str | Path, topics: BagTopics) -> Iterator[tuple[str, int, Any]]:
    """Yield (role, log time ns, deserialised message) in log-time order.

    ``topics.resolved`` is filled with the topics used.
    """
    reader = _open_reader(bag)
    try:
        by_topic, conns = _role_connections(reader, topics)
        for conn, t_ns, raw in reader.messages(connections=conns):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception as exc:  # a corrupt message is skipped, not fatal
                LOGGER.warning("skipping undecodable message on %s: %s", conn.topic, exc)
                continue
            yield by_topic[conn.topic], int(t_ns), msg
    finally:
        reader.close()


def _role_connections(reader: Any, topics: BagTopics) -> tuple[dict[str, str], list[Any]]:
    """Fill ``topics.resolved`` from the bag's topics.

    Returns:
        (role by topic name, the reader's connections on those topics).
    """
    topics.resolved = resolve_topics({c.topic for c in reader.connections}, topics)
    by_topic = {v: k for k, v in topics.resolved.items()}
    return by_topic, [c for c in reader.connections if c.topic in by_topic]


def _header_stamp_ns(msg: Any) -> int:
    st = msg.header.stamp
    sec = getattr(st, "sec", None)
    if sec is None:  # ROS 1 time
        sec, nsec = st.secs, st.nsecs
    else:
        nsec = st.nanosec
    return int(sec) * 1_000_000_000 + int(nsec)


# --------------------------------------------------------------------------- prior at frames


class PriorTracker:
    """The GNSS prior at each image, computed like the pipeline's fix buffer does.

    Kept outside the pipeline so the node mode (where the prior is internal to the node) writes
    the same ``prior.csv``.
    """

    def __init__(self, configs: Any) -> None:
        from cvgl_ros.ros.pipeline import FixBuffer

        self._settings = configs.node
        self._buffer = FixBuffer(configs.node.fix_buffer_size)

    def on_fix(self, msg: Any) -> None:
        from cvgl_ros.ros import convert
        from cvgl_ros.ros.errors import FixRejectedError

        s = self._settings
        try:
            prior = convert.gnss_prior_from_navsatfix(
                msg, s.fix_default_sigma_m, s.fix_min_sigma_m
            )
        except (FixRejectedError, AttributeError, TypeError, ValueError):
            return
        self._buffer.add_or_restart(prior)

    def prior_at(self, stamp_s: float) -> tuple[GnssPrior | None, str]:
        from cvgl_ros.ros.errors import FixRejectedError

        try:
            return self._buffer.prior_at(stamp_s, self._settings.max_fix_age_s), "ok"
        except FixRejectedError as exc:
            return None, "no_fix" if exc.reason == "no_fix" else "stale_fix"


# --------------------------------------------------------------------------- direct mode


@dataclass(frozen=True)
class ReplayResult:
    """What a replay produced."""

    records: list[FrameRecord]
    summary: dict[str, Any]
    out_dir: Path


def _pace(rate: float, first: list[float], t_ns: int) -> None:
    """Sleep so that log time advances at ``rate`` times wall time (0 = no pacing)."""
    if rate <= 0.0:
        return
    now = time.perf_counter()
    if not first:
        first.extend([now, t_ns * 1e-9])
        return
    due = first[0] + (t_ns * 1e-9 - first[1]) / rate
    if due > now:
        time.sleep(due - now)


def replay_pipeline(
    bag: str | Path,
    pipeline: Any,
    topics: BagTopics | None = None,
    rate: float = 0.0,
    max_frames: int | None = None,
    on_frame: Callable[[FrameRecord, Any], None] | None = None,
) -> tuple[list[FrameRecord], dict[str, Any]]:
    """Feed a bag straight into a :class:`~cvgl_ros.ros.pipeline.Pipeline`.

    Args:
        bag: bag path (ROS 2 directory or file, ROS 1 ``.bag``).
        pipeline: the pipeline (built from the same parameters the node would use).
        topics: topics to read.
        rate: playback speed factor (0 = as fast as possible).
        max_frames: stop after this many images.
        on_frame: called with each record and the pipeline's ``FrameResult``.

    Returns:
        (records, extra summary: message counts, wall time, throughput, pipeline counters).
    """
    topics = topics or BagTopics()
    tracker = PriorTracker(pipeline.configs)
    records: list[FrameRecord] = []
    msg_counts: Counter[str] = Counter()
    first: list[float] = []
    t_start = time.perf_counter()
    busy_s = 0.0
    for role, t_ns, msg in iter_bag(bag, topics):
        _pace(rate, first, t_ns)
        msg_counts[role] += 1
        if role == "camera_info":
            pipeline.on_camera_info(msg)
        elif role == "fix":
            pipeline.on_fix(msg)
            tracker.on_fix(msg)
        elif role == "imu":
            pipeline.on_imu(msg)
        elif role == "image":
            try:
                stamp_ns = _header_stamp_ns(msg)
            except AttributeError:
                stamp_ns = t_ns
            t0 = time.perf_counter()
            result = pipeline.process_image(msg)
            dt = time.perf_counter() - t0
            busy_s += dt
            prior, prior_status = tracker.prior_at(stamp_ns * 1e-9)
            rec = FrameRecord(stamp_ns, result.estimate, prior, prior_status, dt)
            records.append(rec)
            if on_frame is not None:
                on_frame(rec, result)
            if max_frames is not None and len(records) >= max_frames:
                break
    wall = time.perf_counter() - t_start
    extra = _run_summary(
        "pipeline", bag, topics, msg_counts, len(records), wall, busy_s, pipeline.stats_snapshot()
    )
    return records, extra


def _run_summary(
    mode: str,
    bag: str | Path,
    topics: BagTopics,
    msg_counts: Counter[str],
    frames: int,
    wall_s: float,
    busy_s: float,
    pipeline_stats: dict[str, Any],
) -> dict[str, Any]:
    """The mode-specific part of ``summary.json``: messages, wall time and throughput.

    Args:
        mode: ``pipeline`` or ``node``.
        bag: the bag replayed.
        topics: the topics (resolved).
        msg_counts: messages read per role.
        frames: images localized.
        wall_s: wall time of the replay, seconds.
        busy_s: time spent localizing the images, seconds.
        pipeline_stats: the pipeline's counters.
    """
    return {
        "mode": mode,
        "bag": str(bag),
        "topics": dict(topics.resolved),
        "messages": dict(msg_counts),
        "wall_s": wall_s,
        "frames_per_s_wall": frames / wall_s if wall_s > 0 else math.nan,
        "frames_per_s_processing": frames / busy_s if busy_s > 0 else math.nan,
        "pipeline_stats": pipeline_stats,
    }


# --------------------------------------------------------------------------- output bag


class OutBagWriter:
    """Writes published-style messages (pose, fix, diagnostics) into an mcap bag.

    Args:
        path: the bag directory to create.
        map_frame: frame of ``~/pose``.
        fix_frame: frame of ``~/fix`` (the node's ``fix_frame_id`` or ``base_frame``).
    """

    def __init__(self, path: Path, map_frame: str, fix_frame: str) -> None:
        from rosbags.typesys import Stores, get_typestore

        from cvgl_ros.tools.synth import open_writer

        self.typestore = get_typestore(Stores.LATEST)
        self.t = self.typestore.types
        self.map_frame = map_frame
        self.fix_frame = fix_frame
        if path.exists():
            raise FileExistsError(f"{path} exists")
        self._writer = open_writer(path, "mcap")
        self._writer.open()
        ts = self.typestore
        self._pose = self._writer.add_connection(
            POSE_OUT_TOPIC, "geometry_msgs/msg/PoseWithCovarianceStamped", typestore=ts
        )
        self._fix = self._writer.add_connection(
            FIX_OUT_TOPIC, "sensor_msgs/msg/NavSatFix", typestore=ts
        )
        self._diag = self._writer.add_connection(
            DIAGNOSTICS_OUT_TOPIC, "diagnostic_msgs/msg/DiagnosticArray", typestore=ts
        )

    def _header(self, stamp_ns: int, frame_id: str) -> Any:
        time_msg = self.t["builtin_interfaces/msg/Time"](
            sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
        )
        return self.t["std_msgs/msg/Header"](stamp=time_msg, frame_id=frame_id)

    def write_raw(self, topic: str, stamp_ns: int, cdr: bytes) -> None:
        """Write an already CDR-serialised message (from the node) on one of the topics."""
        conn = {POSE_OUT_TOPIC: self._pose, FIX_OUT_TOPIC: self._fix}.get(topic, self._diag)
        self._writer.write(conn, stamp_ns, cdr)

    def write_frame(self, rec: FrameRecord, result: Any) -> None:
        """Write what the node publishes for one frame: pose + fix when ok, diagnostics always.

        Args:
            rec: the frame's record.
            result: the pipeline's :class:`~cvgl_ros.ros.pipeline.FrameResult` (the fix's
                altitude and service, as the node publishes them).
        """
        from cvgl_ros.ros import convert

        e = rec.estimate
        t = self.t
        ts = self.typestore
        if e.ok:
            x, y, z, w = convert.quaternion_xyzw_from_yaw(e.yaw_enu_rad)
            pose = t["geometry_msgs/msg/Pose"](
                position=t["geometry_msgs/msg/Point"](x=e.east_m, y=e.north_m, z=0.0),
                orientation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w),
            )
            msg = t["geometry_msgs/msg/PoseWithCovarianceStamped"](
                header=self._header(rec.stamp_ns, self.map_frame),
                pose=t["geometry_msgs/msg/PoseWithCovariance"](
                    pose=pose, covariance=np.array(convert.pose_covariance_6x6(e.cov_en_yaw))
                ),
            )
            self._writer.write(
                self._pose,
                rec.stamp_ns,
                ts.serialize_cdr(msg, "geometry_msgs/msg/PoseWithCovarianceStamped"),
            )
            f = result.fix_fields()
            fix = t["sensor_msgs/msg/NavSatFix"](
                header=self._header(rec.stamp_ns, self.fix_frame),
                status=t["sensor_msgs/msg/NavSatStatus"](status=f.status, service=f.service),
                latitude=f.latitude_deg,
                longitude=f.longitude_deg,
                altitude=f.altitude_m,
                position_covariance=np.array(f.position_covariance),
                position_covariance_type=f.position_covariance_type,
            )
            self._writer.write(
                self._fix, rec.stamp_ns, ts.serialize_cdr(fix, "sensor_msgs/msg/NavSatFix")
            )
        kv = t["diagnostic_msgs/msg/KeyValue"]
        status = t["diagnostic_msgs/msg/DiagnosticStatus"](
            level=0 if e.ok else 1,
            name="cvgl_node: localization",
            message=e.status.value if e.ok else "; ".join(e.reasons) or e.status.value,
            hardware_id="cvgl_ros",
            values=[
                kv(key="status", value=e.status.value),
                kv(key="inliers", value=str(e.inliers)),
                kv(key="inlier_ratio", value=f"{e.inlier_ratio:.3f}"),
                kv(key="latency_ms", value=f"{1e3 * rec.latency_s:.1f}"),
            ],
        )
        arr = t["diagnostic_msgs/msg/DiagnosticArray"](
            header=self._header(rec.stamp_ns, ""), status=[status]
        )
        self._writer.write(
            self._diag, rec.stamp_ns, ts.serialize_cdr(arr, "diagnostic_msgs/msg/DiagnosticArray")
        )

    def close(self) -> None:
        """Finish the bag."""
        self._writer.close()


# --------------------------------------------------------------------------- node mode


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
    from cvgl_ros.ros import convert

    q = pose.pose.pose.orientation
    return PoseEstimate(
        status=PoseStatus.OK,
        lat_deg=float(fix.latitude) if fix is not None else math.nan,
        lon_deg=float(fix.longitude) if fix is not None else math.nan,
        east_m=float(pose.pose.pose.position.x),
        north_m=float(pose.pose.pose.position.y),
        yaw_enu_rad=convert.yaw_from_quaternion_xyzw((q.x, q.y, q.z, q.w)),
        cov_en_yaw=_en_yaw_block(pose.pose.covariance),
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
                stamp_ns = _header_stamp_ns(msg)
                with lock:
                    by_stamp[stamp_ns] = msg
                if bag_writer is not None:
                    bag_writer.write_raw(topic, stamp_ns, serialize_message(msg))

            return on_output

        def on_diag(msg: Any) -> None:
            _parse_diagnostics(msg, obs, lock)
            if bag_writer is not None:
                bag_writer.write_raw(
                    DIAGNOSTICS_OUT_TOPIC, _header_stamp_ns(msg), serialize_message(msg)
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
        first: list[float] = []
        published: Counter[str] = Counter()
        # The node's own input counters (same process): the image is sent only after every
        # fix, IMU and CameraInfo message before it in the bag has reached the pipeline, since
        # DDS does not order messages across topics.
        node_pipeline = getattr(node, "_pipeline", None)
        counter_keys = {"fix": "fixes_in", "imu": "imu_in", "camera_info": "camera_infos_in"}

        def inputs_taken() -> bool:
            if node_pipeline is None:
                return obs.fixes_in >= published["fix"]
            snap = node_pipeline.stats_snapshot()
            return all(int(snap.get(k, 0)) >= published[r] for r, k in counter_keys.items())

        reader = _open_reader(bag)
        try:
            by_topic, conns = _role_connections(reader, topics)
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
                _pace(rate, first, t_ns)
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
                stamp_ns = _header_stamp_ns(msg)
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
        stats = node._pipeline.stats_snapshot() if hasattr(node, "_pipeline") else {}
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
    extra = _run_summary("node", bag, topics, msg_counts, len(records), wall, busy_s, stats)
    return records, extra


# --------------------------------------------------------------------------- entry points


def build_overrides(
    map_source: str | None, sets: Sequence[str] | None, keep_debug: bool
) -> list[str]:
    """``name:=value`` overrides from ``--map``, ``--set`` and the need for debug data."""
    overrides: list[str] = []
    if map_source:
        overrides.append(f"tiles.source:={map_source}")
    if keep_debug:
        overrides.append("publish_overlay:=true")
    overrides.extend(sets or [])
    return overrides


def replay(
    bag: str | Path,
    config: str | Path | None,
    out_dir: str | Path,
    *,
    map_source: str | None = None,
    overrides: Sequence[str] | None = None,
    through_node: bool = False,
    rate: float = 0.0,
    out_bag: bool = False,
    topics: BagTopics | None = None,
    max_frames: int | None = None,
    on_frame: Callable[[FrameRecord, Any], None] | None = None,
    keep_debug: bool = False,
    node_timeout_s: float = 60.0,
) -> ReplayResult:
    """Replay a bag and write ``poses.csv``, ``prior.csv``, ``summary.json`` (+ ``out_bag``).

    Args:
        bag: the bag.
        config: node parameter YAML (``cvgl_node: ros__parameters:``), or None for defaults.
        out_dir: output directory.
        map_source: overrides ``tiles.source`` (GeoTIFF, MBTiles or XYZ URL template).
        overrides: more ``name:=value`` parameter overrides.
        through_node: run the real node under rclpy and publish the bag into it.
        rate: playback speed factor (0 = as fast as possible).
        out_bag: also write ``out_dir/out_bag`` with the published messages.
        topics: input topics.
        max_frames: stop after this many images.
        on_frame: per-frame callback (pipeline mode only).
        keep_debug: keep the localizer's debug data (overlays; pipeline mode).
        node_timeout_s: longest wait for the node to answer one image (node mode), seconds.

    Returns:
        Records, summary and the output directory.
    """
    from cvgl_ros.ros.errors import ParameterError
    from cvgl_ros.ros.params import configs_from_params, merged_values

    if not Path(bag).exists():
        raise ReplayError(f"bag not found: {bag}")
    topics = topics or BagTopics()
    all_overrides = build_overrides(map_source, overrides, keep_debug)
    # Parameters and bag first: both fail in milliseconds, building the localizer does not.
    configs = configs_from_params(merged_values(config, all_overrides))
    check_bag(bag, topics, required_roles(configs))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bag_writer: OutBagWriter | None = None
    if through_node:
        records, extra = replay_through_node(
            bag,
            config,
            all_overrides,
            topics,
            rate=rate,
            max_frames=max_frames,
            record_path=out / "out_bag" if out_bag else None,
            timeout_s=node_timeout_s,
        )
    else:
        from cvgl_ros.ros.pipeline import Pipeline

        try:
            pipeline = Pipeline.from_configs(configs)
        except (ParameterError, ImportError):
            raise
        except Exception as exc:  # the components' own: unreadable map, weights or cache
            what = f"{type(exc).__name__}: {exc}"
            raise ReplayError(f"cannot build the localizer: {what}") from exc
        if out_bag:
            s = pipeline.configs.node
            bag_writer = OutBagWriter(out / "out_bag", s.map_frame, s.fix_frame_id or s.base_frame)

        def both(rec: FrameRecord, result: Any) -> None:
            if bag_writer is not None:
                bag_writer.write_frame(rec, result)
            if on_frame is not None:
                on_frame(rec, result)

        try:
            records, extra = replay_pipeline(bag, pipeline, topics, rate, max_frames, both)
        finally:
            if bag_writer is not None:
                bag_writer.close()
    extra["config"] = str(config) if config else None
    extra["overrides"] = list(all_overrides)
    summary = write_outputs(out, records, extra)
    return ReplayResult(records, summary, out)


def add_topic_arguments(p: argparse.ArgumentParser) -> None:
    """``--image-topic`` etc."""
    for role, default in DEFAULT_TOPICS.items():
        p.add_argument(
            f"--{role.replace('_', '-')}-topic", default=default, help=f"{role} topic in the bag"
        )


def topics_from_args(args: argparse.Namespace) -> BagTopics:
    """Topics from parsed arguments."""
    return BagTopics(
        image=args.image_topic,
        camera_info=args.camera_info_topic,
        fix=args.fix_topic,
        imu=args.imu_topic,
    )


def _main(args: argparse.Namespace) -> int:
    result = replay(
        args.bag,
        args.config,
        args.out,
        map_source=args.map,
        overrides=args.set,
        through_node=args.through_node,
        rate=args.rate,
        out_bag=args.out_bag,
        topics=topics_from_args(args),
        max_frames=args.max_frames,
    )
    s = result.summary
    counts = ", ".join(f"{k}: {v}" for k, v in s["status_counts"].items())
    print(f"replay ({s['mode']}): {s['frames']} frames; {counts}")
    fps = s.get("frames_per_s_processing", math.nan)
    print(f"replay: availability {100 * s['availability']:.1f} %, {fps:.2f} frames/s processing")
    print(f"replay: wrote {result.out_dir / 'poses.csv'}, prior.csv, summary.json")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``replay`` subcommand."""
    p = sub.add_parser("replay", help="replay a bag through the localizer; poses.csv + summary")
    p.add_argument("bag", help="ROS 2 bag (mcap/sqlite3 directory or file) or ROS 1 .bag")
    p.add_argument("--config", default=None, help="node parameter YAML (cvgl_node)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--map", default=None, help="tile source override (GeoTIFF/MBTiles/URL)")
    p.add_argument("--through-node", action="store_true", help="run the real node over DDS")
    p.add_argument("--rate", type=float, default=0.0, help="speed factor (0 = max speed)")
    p.add_argument("--out-bag", action="store_true", help="record published messages (mcap)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N images")
    p.add_argument(
        "--set", action="append", default=[], metavar="NAME:=VALUE", help="parameter override"
    )
    add_topic_arguments(p)
    p.set_defaults(func=_main)
