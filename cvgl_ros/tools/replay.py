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

This module is the command and the :func:`replay` facade; the work is done by
:mod:`~cvgl_ros.tools.bags` (reading bags), :mod:`~cvgl_ros.tools.outputs` (the files and the
out-bag), :mod:`~cvgl_ros.tools.replay_pipeline` and :mod:`~cvgl_ros.tools.replay_node` (the
two modes).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvgl_ros.tools.bags import (
    BagTopics,
    add_topic_arguments,
    check_bag,
    required_roles,
    topics_from_args,
)
from cvgl_ros.tools.errors import ReplayError
from cvgl_ros.tools.outputs import FrameRecord, OutBagWriter, write_outputs
from cvgl_ros.tools.replay_node import replay_through_node
from cvgl_ros.tools.replay_pipeline import replay_pipeline


@dataclass(frozen=True)
class ReplayResult:
    """What a replay produced."""

    records: list[FrameRecord]
    summary: dict[str, Any]
    out_dir: Path


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
