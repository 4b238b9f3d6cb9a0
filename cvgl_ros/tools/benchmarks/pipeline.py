"""Benchmark suite ``pipeline``: end-to-end replay throughput and per-stage latency.

A synthetic nadir flight (640x480, the procedural map, a drone at 10 m/s filmed at 10 Hz: the
goal's operating point, about 1 m between frames) is written to an mcap bag once; then it is
replayed through the node's :class:`~cvgl_ros.ros.pipeline.Pipeline` (the default replay mode:
bag read + decode + patch + match + depth + lift + RANSAC + covariance):

- classical path (SIFT), 640x480 with the default configuration (the localizer reuses its
  aerial patch while the prior stays near its centre, so the aerial features come from the
  matcher's cache on most frames);
- the same with patch reuse off (a new patch built and described at every prior: the worst
  case, e.g. a prior that jumps by more than the reuse margin every frame);
- classical path at 320x240 for scale;
- learned path with RANDOM weights of the real architectures (DINOv2 ViT-S/14 + head at
  224x224 ground input, Depth Anything V2 Small at 266x266, aerial features cached per patch),
  when torch and the models package are installed; with random weights the matches are noise,
  so the frames fail RANSAC, and only the timing (and peak memory) is meaningful.

The baseline measured in the same run is reading and decoding the bag alone, so the ratio says
what share of the replay the localizer is. Goals (2-core machine): classical >= 10 Hz at
640x480, learned >= 4 Hz, learned peak memory <= 1 GB.
"""

from __future__ import annotations

import logging
import math
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

LOGGER = logging.getLogger(__name__)

NUM_THREADS = 2


# The flight of the classical rows: a drone at this speed filmed at this rate.
FLIGHT_RATE_HZ = 10.0
FLIGHT_SPEED_M_PER_S = 10.0


def _flight(tmp: Path, frames: int, width_px: int, height_px: int, name: str) -> tuple[Path, Path]:
    from dataclasses import replace

    from cvgl_ros.sim.synthetic_map import SyntheticMapConfig, synthetic_world, write_geotiff
    from cvgl_ros.tools.demo import plan_flight
    from cvgl_ros.tools.synth import synthesize

    world = synthetic_world(SyntheticMapConfig())
    tif = tmp / "map.tif"
    if not tif.exists():
        write_geotiff(tif, world)
    cfg = plan_flight(world, frames=frames, width_px=width_px, height_px=height_px, seed=2)
    trajectory = replace(
        cfg.trajectory, rate_hz=FLIGHT_RATE_HZ, speed_m_per_s=FLIGHT_SPEED_M_PER_S
    )
    cfg = replace(cfg, imu=True, trajectory=trajectory)
    res = synthesize(world, cfg, tmp / name, map_label="synthetic", map_source=str(tif))
    return res.bag_path, tmp / name / "params.yaml"


def _read_decode_fps(bag: Path) -> float:
    """Frames per second of reading the bag and decoding its images, nothing else."""
    from cvgl_ros.ros import convert
    from cvgl_ros.tools.replay import BagTopics, iter_bag

    n = 0
    t0 = time.perf_counter()
    for role, _, msg in iter_bag(bag, BagTopics()):
        if role == "image":
            convert.any_image_to_rgb(msg)
            n += 1
    return n / max(time.perf_counter() - t0, 1e-9)


def _replay_rows(
    label: str,
    bag: Path,
    pipeline: Any,
    baseline_fps: float,
    goal: str,
    max_frames: int | None = None,
) -> list[dict[str, Any]]:
    from cvgl_ros.tools.replay import replay_pipeline

    t0 = time.perf_counter()
    records, _ = replay_pipeline(bag, pipeline, max_frames=max_frames)
    wall = time.perf_counter() - t0
    fps = len(records) / wall if wall > 0 else math.nan
    counts: dict[str, int] = {}
    for r in records:
        counts[r.estimate.status.value] = counts.get(r.estimate.status.value, 0) + 1
    notes = f"{len(records)} frames; statuses {counts}"
    patch_stats = getattr(pipeline.localizer, "patch_stats", None)
    if callable(patch_stats):
        notes += f"; patches {patch_stats()}"
    matcher = getattr(pipeline.localizer, "matcher", None)
    hits, misses = getattr(matcher, "cache_hits", None), getattr(matcher, "cache_misses", None)
    if hits is not None:
        notes += f"; aerial feature cache hits {hits} misses {misses}"
    rows: list[dict[str, Any]] = [
        {
            "name": f"replay {label}",
            "metric": "frames_per_s",
            "value": fps,
            "baseline": "bag read + decode only",
            "ratio": fps / baseline_fps if baseline_fps > 0 else math.nan,
            "goal": goal,
            "notes": notes,
        }
    ]
    stages: dict[str, list[float]] = {}
    for r in records:
        for stage, sec in r.estimate.timings_s.items():
            stages.setdefault(stage, []).append(1e3 * sec)
    for stage in ("patch", "match", "depth", "lift", "ransac", "total"):
        if stage in stages:
            rows.append(
                {
                    "name": f"{label} stage {stage}",
                    "metric": "median_ms",
                    "value": float(np.median(stages[stage])),
                    "notes": f"p90 {np.percentile(stages[stage], 90):.1f} ms",
                }
            )
    return rows


def _without_patch_reuse(params: Path) -> Any:
    """The node configuration of a params file with the localizer's patch reuse off."""
    from dataclasses import replace

    from cvgl_ros.core.config import PatchReuseConfig
    from cvgl_ros.ros.params import configs_from_params, merged_values

    configs = configs_from_params(merged_values(params, None))
    localizer = replace(configs.localizer, patch_reuse=PatchReuseConfig(max_offset_fraction=0.0))
    return replace(configs, localizer=localizer)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _learned_components(tmp: Path) -> tuple[Any, Any]:
    """Random-weight learned matcher (ViT-S/14 224, aerial 518) and Depth Anything V2 Small."""
    import torch

    from cvgl_ros.backends.base import open_backend
    from cvgl_ros.models.checkpoint import (
        MatcherCheckpointConfig,
        load_matcher_checkpoint,
        save_matcher_checkpoint,
    )
    from cvgl_ros.models.config import DepthModelConfig, LearnedMatcherConfig
    from cvgl_ros.models.depth import DepthAnythingDepth
    from cvgl_ros.models.learned import LearnedMatcher
    from cvgl_ros.models.networks import FeaturesNetwork, random_checkpoint_tensors

    torch.set_num_threads(NUM_THREADS)
    cfg = MatcherCheckpointConfig(ground_size_px=(224, 224), aerial_size_px=(518, 518))
    save_matcher_checkpoint(tmp / "ck", cfg, random_checkpoint_tensors(cfg))
    ck = load_matcher_checkpoint(tmp / "ck")
    net = FeaturesNetwork.from_checkpoint(ck, None)
    backend = open_backend(
        "torch",
        net,
        num_threads=NUM_THREADS,
        input_names=("images",),
        output_names=("descriptors",),
    )
    matcher = LearnedMatcher(backend, backend, ck, LearnedMatcherConfig(top_k=512))
    depth = DepthAnythingDepth.from_config(
        DepthModelConfig(variant="small", input_size_px=(266, 266), num_threads=NUM_THREADS)
    )
    return matcher, depth


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the pipeline suite; returns benchmark rows."""
    import cv2

    from cvgl_ros.ros.pipeline import Pipeline

    cv2.setNumThreads(NUM_THREADS)
    frames = 10 if quick else 40
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_str:
        tmp = Path(tmp_str)
        bag, params = _flight(tmp, frames, 640, 480, "vga")
        base = _read_decode_fps(bag)
        rows.append(
            {
                "name": "bag read + decode only",
                "metric": "frames_per_s",
                "value": base,
                "notes": "640x480 rgb8, mcap",
            }
        )
        rows += _replay_rows(
            "classical 640x480", bag, Pipeline.from_params_file(params), base, ">= 10 Hz"
        )
        rows += _replay_rows(
            "classical 640x480 no patch reuse",
            bag,
            Pipeline.from_configs(_without_patch_reuse(params)),
            base,
            "",
        )
        small_bag, small_params = _flight(tmp, frames, 320, 240, "qvga")
        small_base = _read_decode_fps(small_bag)
        rows += _replay_rows(
            "classical 320x240", small_bag, Pipeline.from_params_file(small_params), small_base, ""
        )
        try:
            matcher, depth = _learned_components(tmp)
        except ImportError as exc:
            rows.append(
                {
                    "name": "replay learned",
                    "metric": "frames_per_s",
                    "value": math.nan,
                    "notes": f"skipped: {exc}",
                }
            )
            return rows
        # Warm-up (first torch call allocates and picks kernels), outside the timed replay.
        from cvgl_ros.core.types import AerialPatch

        dummy = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
        depth.depth_map(dummy)
        warm = AerialPatch(dummy[:, :480].copy(), 0.5, 0.0, 0.0, np.ones((480, 480), bool), "w")
        matcher.match(dummy, warm)
        # The injected components replace the configured classical matcher and plane depth.
        pipeline = Pipeline.from_params_file(params, matcher=matcher, depth=depth)
        rss_before = _peak_rss_mb()
        # With random weights on CPU the learned path is slow: a few frames suffice.
        rows += _replay_rows(
            "learned (random weights) 640x480",
            bag,
            pipeline,
            base,
            ">= 4 Hz",
            max_frames=2 if quick else 5,
        )
        rows.append(
            {
                "name": "learned path peak RSS",
                "metric": "peak_rss_mb",
                "value": _peak_rss_mb(),
                "goal": "<= 1024 MB",
                "notes": f"whole process (incl. the classical runs: {rss_before:.0f} MB before)",
            }
        )
    return rows
