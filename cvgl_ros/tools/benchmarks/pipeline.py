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
- the same with ground-resolution-adaptive matching (``view.adaptive``, as the drone preset):
  the patch at the camera's GSD (at most 2x finer than the map) and the full-resolution
  camera image instead of the fixed 320 px downscale;
- classical path at 320x240 for scale;
- learned path as deployed on a CPU: the same bag and parameter file with
  ``matcher.kind: learned`` (DINOv2 ViT-S/14 + head at 224x224 ground input, aerial 518 px
  features cached per patch) and ``depth.kind: model`` (Depth Anything V2 Small at 266x266),
  ``backend: auto`` on ONNX files exported once into a temporary ``engine_dir`` (so ONNX
  Runtime runs them), in float32 and with ``int8: true``, and with ``backend: torch`` as the
  baseline. Each runs in a FRESH process, so its peak RSS (``VmHWM``) is the learned path's
  own. RANDOM weights of the real architectures (when torch and the models package are
  installed): the matches are noise, so the frames end in a gating status (the notes count
  them); the relative depth is mapped into 2-50 m (the network runs unchanged) so that lifting
  and RANSAC run on every frame as they would with real weights. Only timing and memory are
  meaningful.

Baselines measured in the same run: reading and decoding the bag alone for the classical rows
and the torch learned row (the ratio says what share of the replay the localizer is), the
torch learned row for the ONNX Runtime rows. Goals (2-core machine): classical >= 10 Hz at
640x480, learned >= 4 Hz, learned peak memory <= 1 GB.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import subprocess
import sys
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

STAGES: tuple[str, ...] = ("patch", "match", "depth", "lift", "ransac", "total")
# Network sub-stages of the learned path (backend latencies, milliseconds).
LEARNED_SUBSTAGES: tuple[str, ...] = ("match.ground_net", "depth.net")
# Learned variants, each replayed in a fresh process: the torch baseline, then ONNX Runtime
# (``backend: auto`` on the exported files) in float32 and INT8.
LEARNED_VARIANTS: tuple[str, ...] = ("torch", "onnxruntime", "onnxruntime-int8")
LEARNED_TOP_K = 512
LEARNED_DEPTH_SIZE_PX = (266, 266)
# Longest a learned replay child may run, seconds (a hung child must not hang the suite).
CHILD_TIMEOUT_S = 900.0


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
    from cvgl_ros.tools.bags import BagTopics, iter_bag

    n = 0
    t0 = time.perf_counter()
    for role, _, msg in iter_bag(bag, BagTopics()):
        if role == "image":
            convert.any_image_to_rgb(msg)
            n += 1
    return n / max(time.perf_counter() - t0, 1e-9)


def _load_avg() -> float:
    """One-minute load average (NaN where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def replay_summary(bag: Path, pipeline: Any, max_frames: int | None = None) -> dict[str, Any]:
    """Replay ``bag`` through ``pipeline`` as fast as possible and summarise it.

    Args:
        bag: the flight's bag.
        pipeline: a :class:`~cvgl_ros.ros.pipeline.Pipeline`.
        max_frames: stop after this many images (None: the whole bag).

    Returns:
        JSON-serialisable ``{"frames", "wall_s", "frames_per_s", "statuses", "stages_ms":
        {stage: [median, p90]}, "median_frame_ms", "patches", "cache": {"hits", "misses"},
        "load_avg": [before, after]}`` (frame = the pipeline's work on one image; the
        stages are the localizer's, plus the learned matcher's and depth model's network
        latencies where those components expose them; ``patches`` / ``cache`` are absent
        where the localizer or matcher keeps no such counters).
    """
    from cvgl_ros.tools.replay_pipeline import replay_pipeline

    localizer = pipeline.localizer
    matcher = getattr(localizer, "matcher", None)
    depth = getattr(localizer, "depth", None)
    depth_model = getattr(depth, "provider", depth)  # unwrap PlausibleDepth
    stages: dict[str, list[float]] = {}

    def on_frame(record: Any, result: Any) -> None:
        del result
        for stage, sec in record.estimate.timings_s.items():
            stages.setdefault(stage, []).append(1e3 * sec)
        net = getattr(matcher, "last_latency_s", None)
        if isinstance(net, dict) and "ground" in net and "match" in record.estimate.timings_s:
            stages.setdefault("match.ground_net", []).append(1e3 * float(net["ground"]))
        depth_s = getattr(depth_model, "last_latency_s", None)
        if isinstance(depth_s, float) and "depth" in record.estimate.timings_s:
            stages.setdefault("depth.net", []).append(1e3 * depth_s)

    cache_before = _cache_counts(matcher)
    load_before = _load_avg()
    t0 = time.perf_counter()
    records, _ = replay_pipeline(bag, pipeline, max_frames=max_frames, on_frame=on_frame)
    wall_s = time.perf_counter() - t0
    latencies_ms = [1e3 * r.latency_s for r in records] or [math.nan]
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r.estimate.status.value] = statuses.get(r.estimate.status.value, 0) + 1
    summary: dict[str, Any] = {
        "frames": len(records),
        "wall_s": wall_s,
        "frames_per_s": len(records) / wall_s if wall_s > 0 else math.nan,
        "median_frame_ms": float(np.median(latencies_ms)),
        "statuses": statuses,
        "stages_ms": {
            k: [float(np.median(v)), float(np.percentile(v, 90))] for k, v in stages.items()
        },
        "load_avg": [load_before, _load_avg()],
    }
    patch_stats = getattr(localizer, "patch_stats", None)
    if callable(patch_stats):
        summary["patches"] = dict(patch_stats())
    cache_after = _cache_counts(matcher)
    if cache_before is not None and cache_after is not None:
        summary["cache"] = {
            "hits": cache_after[0] - cache_before[0],
            "misses": cache_after[1] - cache_before[1],
        }
    return summary


def _cache_counts(matcher: Any) -> tuple[int, int] | None:
    """(hits, misses) of a matcher's aerial feature cache (learned: ``cache.stats()``,
    classical: ``cache_hits`` / ``cache_misses``); None when it keeps no such counters."""
    cache = getattr(matcher, "cache", None)
    if cache is not None and callable(getattr(cache, "stats", None)):
        stats = cache.stats()
        return int(stats["hits"]), int(stats["misses"])
    if getattr(matcher, "cache_hits", None) is not None:
        return int(matcher.cache_hits), int(matcher.cache_misses)
    return None


def _summary_notes(summary: dict[str, Any]) -> str:
    notes = (
        f"{summary['frames']} frames, median frame {summary['median_frame_ms']:.0f} ms; "
        f"statuses {summary['statuses']}"
    )
    if "patches" in summary:
        notes += f"; patches {summary['patches']}"
    if "cache" in summary:
        notes += f"; aerial feature cache {summary['cache']}"
    before, after = summary["load_avg"]
    return notes + f"; load avg {before:.2f} -> {after:.2f}"


def _stage_rows(
    label: str, summary: dict[str, Any], baseline: dict[str, Any] | None, baseline_label: str
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ref_stages = (baseline or {}).get("stages_ms", {})
    for stage in STAGES + LEARNED_SUBSTAGES:
        if stage not in summary["stages_ms"]:
            continue
        median, p90 = summary["stages_ms"][stage]
        row: dict[str, Any] = {
            "name": f"{label} stage {stage}",
            "metric": "median_ms",
            "value": median,
            "notes": f"p90 {p90:.1f} ms",
        }
        ref = ref_stages.get(stage)
        if ref and ref[0] > 0:
            row["baseline"] = f"{baseline_label} stage {stage}"
            row["ratio"] = median / ref[0]
        rows.append(row)
    return rows


def _replay_rows(
    label: str,
    bag: Path,
    pipeline: Any,
    baseline_fps: float,
    goal: str,
    max_frames: int | None = None,
) -> list[dict[str, Any]]:
    """Rows of one in-process replay: FPS (vs bag read + decode) and per-stage medians."""
    summary = replay_summary(bag, pipeline, max_frames)
    fps = summary["frames_per_s"]
    row: dict[str, Any] = {
        "name": f"replay {label}",
        "metric": "frames_per_s",
        "value": fps,
        "baseline": "bag read + decode only",
        "ratio": fps / baseline_fps if baseline_fps > 0 else math.nan,
        "goal": goal,
        "notes": _summary_notes(summary),
    }
    return [row, *_stage_rows(label, summary, None, "")]


def _without_patch_reuse(params: Path) -> Any:
    """The node configuration of a params file with the localizer's patch reuse off."""
    from dataclasses import replace

    from cvgl_ros.core.config import PatchReuseConfig
    from cvgl_ros.ros.params import configs_from_params, merged_values

    configs = configs_from_params(merged_values(params, None))
    localizer = replace(configs.localizer, patch_reuse=PatchReuseConfig(max_offset_fraction=0.0))
    return replace(configs, localizer=localizer)


# --- learned path, one fresh process per backend ------------------------------------------


def learned_overrides(variant: str, files: dict[str, str]) -> dict[str, Any]:
    """Node parameter overrides that turn a flight's classical parameter file into the
    learned path of ``variant``.

    Args:
        variant: ``"torch"`` (the checkpoint, DINOv2 and Depth Anything weight directories on
            torch), ``"onnxruntime"`` (``backend: auto`` with ``engine_dir`` / ``engine_path``
            holding the exported ONNX files: what a CPU deployment runs) or
            ``"onnxruntime-int8"`` (the same with ``int8: true``).
        files: the paths of :func:`cvgl_ros.tools.benchmarks.models.export_learned_frame_models`
            (``checkpoint``, ``dino``, ``depth_weights``, ``engine_dir``, ``depth_onnx``).

    Returns:
        ``{parameter name: value}`` for :meth:`~cvgl_ros.ros.pipeline.Pipeline.from_params_file`.

    Raises:
        ValueError: unknown ``variant``.
    """
    if variant not in LEARNED_VARIANTS:
        raise ValueError(f"variant must be one of {LEARNED_VARIANTS}, got {variant!r}")
    use_torch = variant == "torch"
    int8 = variant.endswith("-int8")
    return {
        "matcher.kind": "learned",
        "matcher.learned.checkpoint_path": files["checkpoint"],
        "matcher.learned.backbone_weights_path": files["dino"] if use_torch else "",
        "matcher.learned.backend": "torch" if use_torch else "auto",
        "matcher.learned.engine_dir": files["engine_dir"],
        "matcher.learned.num_threads": NUM_THREADS,
        "matcher.learned.int8": int8,
        "depth.kind": "model",
        "depth.model.variant": "small",
        "depth.model.weights_path": files["depth_weights"] if use_torch else "",
        "depth.model.backend": "torch" if use_torch else "auto",
        "depth.model.engine_path": "" if use_torch else files["depth_onnx"],
        "depth.model.input_size_px": list(LEARNED_DEPTH_SIZE_PX),
        "depth.model.num_threads": NUM_THREADS,
        "depth.model.int8": int8,
    }


def learned_configs(params: Path, variant: str, files: dict[str, str]) -> Any:
    """The node configuration of a flight's parameter file switched to the learned path.

    The flight's depth setting belongs to its classical depth kind, which the model kind does
    not declare, so it is dropped; the learned matcher samples ``LEARNED_TOP_K``
    correspondences (an internal of its config, not a parameter).

    Args:
        params: the flight's node parameter file.
        variant: see :func:`learned_overrides`.
        files: see :func:`learned_overrides`.

    Returns:
        :class:`~cvgl_ros.ros.params.NodeConfigs`.
    """
    from dataclasses import replace

    from cvgl_ros.ros.params import configs_from_params, merged_values

    values = merged_values(params, learned_overrides(variant, files))
    for name in ("depth.camera_height_m", "depth.range_m"):
        values.pop(name, None)
    configs = configs_from_params(values)
    learned = replace(configs.matcher.learned, top_k=LEARNED_TOP_K)
    return replace(configs, matcher=replace(configs.matcher, learned=learned))


def _backend_kind(backend: Any) -> str:
    name = type(backend).__name__
    return {"TorchBackend": "torch", "OrtBackend": "onnxruntime"}.get(name, name)


def learned_replay_child(argv: list[str]) -> dict[str, Any]:
    """Replay the flight through the learned path in this (fresh) process.

    Args:
        argv: ``[variant, files_json, bag, params, frames]``: see :func:`learned_overrides`
            for the variant and files; the flight's bag and parameter file; timed frames.

    Returns:
        :func:`replay_summary` plus ``"peak_rss_mb"`` (``VmHWM`` of this process: models,
        sessions, bag reading, the whole replay), ``"backends"`` (the backend each network
        runs on), ``"depth_runs"`` and ``"torch_imported"``.
    """
    import cv2

    from cvgl_ros.core.types import AerialPatch
    from cvgl_ros.models.factory import build_depth
    from cvgl_ros.ros.pipeline import Pipeline
    from cvgl_ros.tools.benchmarks.models import PlausibleDepth, peak_rss_mb

    variant, files = argv[0], json.loads(argv[1])
    bag, params, frames = Path(argv[2]), Path(argv[3]), int(argv[4])
    cv2.setNumThreads(NUM_THREADS)
    configs = learned_configs(params, variant, files)
    model: Any = build_depth(configs.depth)  # DepthAnythingDepth: runs, last_latency_s
    pipeline = Pipeline.from_configs(configs, depth=PlausibleDepth(model))
    matcher = pipeline.localizer.matcher
    # Warm-up outside the timed replay (sessions allocate and pick kernels on the first run):
    # a DIFFERENT patch, so the flight's first patch is still an aerial cache miss, as live.
    rng = np.random.default_rng(0)
    dummy = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    model.depth_at(dummy, None, np.zeros((1, 2)), np.eye(3))
    warm = AerialPatch(dummy[:, :480].copy(), 0.5, 0.0, 0.0, np.ones((480, 480), bool), "warm")
    matcher.match(dummy, warm)
    summary = replay_summary(bag, pipeline, max_frames=frames)
    summary.update(
        peak_rss_mb=peak_rss_mb(),
        backends={
            "ground": _backend_kind(getattr(matcher, "ground_backend", None)),
            "aerial": _backend_kind(getattr(matcher, "aerial_backend", None)),
            "depth": _backend_kind(getattr(model, "backend", None)),
        },
        depth_runs=model.runs - 1,
        torch_imported="torch" in sys.modules,
    )
    return summary


_CHILD_SCRIPT = """
import json, sys
from cvgl_ros.tools.benchmarks.pipeline import learned_replay_child
print(json.dumps(learned_replay_child(sys.argv[1:])))
"""


def _run_learned_child(
    variant: str, files: dict[str, str], bag: Path, params: Path, frames: int
) -> dict[str, Any]:
    """:func:`learned_replay_child` in a fresh Python process; ``{"error": ...}`` on failure."""
    cmd = [sys.executable, "-c", _CHILD_SCRIPT, variant, json.dumps(files)]
    cmd += [str(bag), str(params), str(frames)]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            timeout=CHILD_TIMEOUT_S,
            env={**os.environ, "OMP_NUM_THREADS": str(NUM_THREADS)},
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {CHILD_TIMEOUT_S:.0f} s"}
    try:
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return result


def _learned_rows(
    bag: Path, params: Path, baseline_fps: float, frames: int, tmp: Path
) -> list[dict[str, Any]]:
    """Rows of the learned path: each variant of :data:`LEARNED_VARIANTS` replayed in a fresh
    process (FPS, per-stage medians, peak RSS), ONNX Runtime against the torch baseline."""
    try:
        from cvgl_ros.backends.ort_backend import int8_model_path
        from cvgl_ros.tools.benchmarks.models import export_learned_frame_models

        files = export_learned_frame_models(tmp / "learned")
        for onnx in Path(files["engine_dir"]).glob("*.onnx"):
            if not onnx.name.endswith(".int8.onnx"):
                int8_model_path(onnx)  # quantize here, outside the timed child
    except ImportError as exc:
        return [
            {
                "name": "replay learned",
                "metric": "frames_per_s",
                "value": math.nan,
                "notes": f"skipped: {exc}",
            }
        ]
    gc.collect()
    results = {v: _run_learned_child(v, files, bag, params, frames) for v in LEARNED_VARIANTS}
    torch_label = "learned torch 640x480"
    torch_res = results["torch"]
    rows: list[dict[str, Any]] = []
    for variant in LEARNED_VARIANTS:
        label = f"learned {variant} 640x480"
        res = results[variant]
        if "error" in res:
            rows.append(
                {
                    "name": f"replay {label}",
                    "metric": "frames_per_s",
                    "value": math.nan,
                    "notes": f"failed: {res['error']}",
                }
            )
            continue
        fps = res["frames_per_s"]
        row: dict[str, Any] = {
            "name": f"replay {label}",
            "metric": "frames_per_s",
            "value": fps,
            "goal": ">= 4 Hz",
            "notes": (
                "fresh process; ViT-S/14 224 + head, aerial 518 cached, DA-V2-S 266, random "
                f"weights; backends {res['backends']}; "
                + _summary_notes(res)
                + f"; depth runs {res['depth_runs']}; torch imported {res['torch_imported']}"
            ),
        }
        baseline = None
        if variant == "torch":
            row["baseline"] = "bag read + decode only"
            row["ratio"] = fps / baseline_fps if baseline_fps > 0 else math.nan
        elif "error" not in torch_res:
            baseline = torch_res
            row["baseline"] = f"replay {torch_label}"
            row["ratio"] = fps / torch_res["frames_per_s"]
        rows.append(row)
        rows += _stage_rows(label, res, baseline, torch_label)
        rows.append(
            {
                "name": f"{label} peak RSS",
                "metric": "peak_rss_mb",
                "value": res["peak_rss_mb"],
                "goal": "<= 1024 MB",
                "notes": "VmHWM of the fresh process: models, sessions, bag, whole replay",
            }
        )
    return rows


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
        rows += _replay_rows(
            "classical 640x480 adaptive",
            bag,
            Pipeline.from_params_file(params, ["view.adaptive:=true"]),
            base,
            ">= 10 Hz",
        )
        small_bag, small_params = _flight(tmp, frames, 320, 240, "qvga")
        small_base = _read_decode_fps(small_bag)
        rows += _replay_rows(
            "classical 320x240", small_bag, Pipeline.from_params_file(small_params), small_base, ""
        )
        # The whole flight as for the classical rows (--quick: a few frames), the same for
        # every backend, so each sees the same aerial cache misses (new patches).
        rows += _learned_rows(bag, params, base, 4 if quick else frames, tmp)
    return rows
