"""Benchmark suite ``ros``: what the node adds per frame around the localizer.

Rows (640x480 frames, median over repetitions, same run):

- image decoding per encoding (``rgb8``, ``bgr8``, ``mono16`` with its percentile stretch,
  JPEG ``CompressedImage``), each against the baseline of copying the raw bytes into a numpy
  array (the least any adapter must do);
- the pipeline's own overhead per frame (decode, fix interpolation, stats, stamping) with a
  localizer that returns at once, against the same decode alone;
- building the output messages (pose + fix), when the ROS message packages are installed.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from cvgl_ros.core.types import GnssPrior, PoseEstimate, PoseStatus
from cvgl_ros.ros import convert
from cvgl_ros.ros.params import configs_from_params
from cvgl_ros.ros.pipeline import Pipeline
from cvgl_ros.tools.benchmarks.timing import median_ms

WIDTH, HEIGHT = 640, 480


def _header(stamp_s: float) -> SimpleNamespace:
    sec, nanosec = convert.s_to_sec_nanosec(stamp_s)
    return SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec), frame_id="cam")


def _image_msgs() -> dict[str, SimpleNamespace]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)
    mono16 = (rgb[:, :, 0].astype(np.uint16) * 37 + 1000).astype(np.uint16)
    _, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1])

    def raw(encoding: str, data: bytes, step: int) -> SimpleNamespace:
        return SimpleNamespace(
            header=_header(10.0), height=HEIGHT, width=WIDTH, encoding=encoding,
            is_bigendian=0, step=step, data=data,
        )  # fmt: skip

    return {
        "rgb8": raw("rgb8", rgb.tobytes(), WIDTH * 3),
        "bgr8": raw("bgr8", rgb.tobytes(), WIDTH * 3),
        "mono16": raw("mono16", mono16.tobytes(), WIDTH * 2),
        "jpeg": SimpleNamespace(header=_header(10.0), format="jpeg", data=jpeg.tobytes()),
    }


class _InstantLocalizer:
    """Answers OK at once: isolates the pipeline's own cost."""

    map_origin = None
    matcher = depth = patches = None

    def localize(self, image: Any, camera: Any, prior: GnssPrior, *a: Any, **k: Any) -> Any:
        return PoseEstimate(
            status=PoseStatus.OK, lat_deg=prior.lat_deg, lon_deg=prior.lon_deg, east_m=0.0,
            north_m=0.0, yaw_enu_rad=0.0, cov_en_yaw=np.eye(3), stamp_s=float(a[1]),
        )  # fmt: skip


def run(quick: bool) -> list[dict[str, object]]:
    """Run the suite; ``quick`` uses fewer repetitions."""
    reps = 20 if quick else 200
    rows: list[dict[str, object]] = []
    msgs = _image_msgs()
    for name, msg in msgs.items():
        data = msg.data
        base_name = f"ros.copy_bytes_{name}"
        base = median_ms(lambda d=data: np.frombuffer(d, np.uint8).copy(), reps)
        ours = median_ms(lambda m=msg: convert.any_image_to_rgb(m), reps)
        rows.append({"name": base_name, "metric": "median_ms", "value": base})
        rows.append({
            "name": f"ros.decode_{name}_640x480", "metric": "median_ms", "value": ours,
            "baseline": base_name, "ratio": ours / base if base > 0 else float("nan"),
            "notes": "Image/CompressedImage -> (H, W, 3) uint8 RGB",
        })  # fmt: skip

    configs = configs_from_params({"tiles.source": "/unused.tif"})
    pipeline = Pipeline(configs, _InstantLocalizer())
    info = SimpleNamespace(
        width=WIDTH, height=HEIGHT, k=[500.0, 0, 319.5, 0, 500.0, 239.5, 0, 0, 1], d=[],
        distortion_model="",
    )  # fmt: skip
    fix = SimpleNamespace(
        header=_header(10.0), status=SimpleNamespace(status=0), latitude=47.0, longitude=8.0,
        altitude=400.0, position_covariance=[4.0, 0, 0, 0, 4.0, 0, 0, 0, 9.0],
        position_covariance_type=2,
    )  # fmt: skip
    pipeline.on_camera_info(info)
    pipeline.on_fix(fix)
    frame = msgs["rgb8"]
    decode = median_ms(lambda: convert.any_image_to_rgb(frame), reps)

    def next_frame() -> SimpleNamespace:
        # A new stamp per call (1 us apart, within the fix's age): a repeated stamp would be
        # dropped as a duplicate before the localizer.
        frame.header.stamp.nanosec += 1000
        return frame

    total = median_ms(lambda: pipeline.process_image(next_frame()), reps)
    rows.append({"name": "ros.decode_only_rgb8", "metric": "median_ms", "value": decode})
    rows.append({
        "name": "ros.pipeline_overhead_rgb8", "metric": "median_ms", "value": total,
        "baseline": "ros.decode_only_rgb8", "ratio": total / decode if decode > 0 else None,
        "goal": "< 1 ms per frame besides the localizer",
        "notes": "process_image with an instant localizer: decode + prior + stats",
    })  # fmt: skip
    try:
        est = pipeline.process_image(next_frame()).estimate
        build = median_ms(
            lambda: (convert.build_pose_msg(est, "map"), convert.build_fix_msg(est, "cam")), reps
        )
        rows.append({"name": "ros.build_pose_and_fix_msgs", "metric": "median_ms", "value": build})
    except ImportError:
        pass
    return rows
