"""What the replay tools write: ``poses.csv``, ``prior.csv``, ``summary.json`` and the out-bag.

Every replay (the pipeline mode, the node mode, the OpenCV peer benchmark) turns each image
into a :class:`FrameRecord`; :func:`write_outputs` writes the files ``cvgl-ros eval`` reads
(columns :data:`~cvgl_ros.tools.eval.POSE_COLUMNS` / :data:`~cvgl_ros.tools.eval.PRIOR_COLUMNS`).
:class:`PriorTracker` computes the GNSS prior at each image the way the pipeline's fix buffer
does, for ``prior.csv``; :class:`OutBagWriter` records the published-style messages in mcap.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.core.attitude import quaternion_xyzw_from_yaw
from cvgl_ros.core.errors import PriorUnavailableError
from cvgl_ros.core.gnss import FixBuffer
from cvgl_ros.core.types import GnssPrior, PoseEstimate
from cvgl_ros.tools.bags import BagTopics
from cvgl_ros.tools.eval import POSE_COLUMNS, PRIOR_COLUMNS

POSE_OUT_TOPIC = "/cvgl_node/pose"
FIX_OUT_TOPIC = "/cvgl_node/fix"
DIAGNOSTICS_OUT_TOPIC = "/diagnostics"


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

    return en_yaw_block(convert.pose_covariance_6x6(cov_en_yaw))


def en_yaw_block(cov6: Any) -> Any:
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


def run_summary(
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


# --------------------------------------------------------------------------- prior at frames


class PriorTracker:
    """The GNSS prior at each image, computed like the pipeline's fix buffer does.

    Kept outside the pipeline so the node mode (where the prior is internal to the node) writes
    the same ``prior.csv``.
    """

    def __init__(self, configs: Any) -> None:
        self._settings = configs.node
        self._buffer = FixBuffer(configs.node.fix_buffer_size)

    def on_fix(self, msg: Any) -> None:
        from cvgl_ros.ros import convert

        s = self._settings
        try:
            prior = convert.gnss_prior_from_navsatfix(
                msg, s.fix_default_sigma_m, s.fix_min_sigma_m
            )
        except (AttributeError, TypeError, ValueError):  # incl. FixRejectedError
            return
        self._buffer.add_or_restart(prior)

    def prior_at(self, stamp_s: float) -> tuple[GnssPrior | None, str]:
        """The prior at ``stamp_s`` (seconds) and ``ok``, or None and why not (``no_fix``,
        ``stale_fix``)."""
        try:
            return self._buffer.prior_at(stamp_s, self._settings.max_fix_age_s), "ok"
        except PriorUnavailableError as exc:
            return None, exc.reason


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
            x, y, z, w = quaternion_xyzw_from_yaw(e.yaw_enu_rad)
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
