"""The replay's pipeline mode: a bag's messages straight into the node's
:class:`~cvgl_ros.ros.pipeline.Pipeline`, as fast as possible or paced.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cvgl_ros.tools.bags import BagTopics, Pacer, header_stamp_ns, iter_bag
from cvgl_ros.tools.outputs import FrameRecord, PriorTracker, run_summary


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
    pacer = Pacer(rate)
    t_start = time.perf_counter()
    busy_s = 0.0
    for role, t_ns, msg in iter_bag(bag, topics):
        pacer.wait(t_ns)
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
                stamp_ns = header_stamp_ns(msg)
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
    extra = run_summary(
        "pipeline", bag, topics, msg_counts, len(records), wall, busy_s, pipeline.stats_snapshot()
    )
    return records, extra
