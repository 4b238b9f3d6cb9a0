"""Model benchmarks (CPU here; GPU rows when a GPU and the packages are present).

Rows: per-model latency torch vs ONNX Runtime at the configured sizes (DINOv2 ViT-S/14 at
224x224, its features network, Depth Anything V2 Small at 266x266), the classical matcher,
the learned matcher with an aerial-cache hit vs a miss, resident memory (RSS) added by each
model, and the learned frame end to end ("learned frame, cache hit"): one 640x480 frame through
the core ``Localizer`` (learned matcher ViT-S/14 224 + head, aerial 518 px features cached;
Depth Anything V2 Small 266; lifting, RANSAC, covariance) on ONNX Runtime, with torch as the
baseline, each in a fresh process so that its peak RSS is its own. Random weights of the real
architectures (latency does not depend on them; the matches are noise, so the frames end in a
gating status, which the notes report).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.tools.benchmarks.timing import median_ms

NUM_THREADS = 2


def rss_mb() -> float:
    """Current resident set size, MiB (Linux /proc; falls back to the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process image, MiB (``VmHWM``: unlike ``ru_maxrss``,
    not inherited from the parent across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _paired_median_ms(fn_a: Any, fn_b: Any, repeats: int) -> tuple[float, float]:
    """Median times of two functions run alternately, so both see the same machine load
    (the CI and development machines are shared)."""
    fn_a()
    fn_b()
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return float(np.median(times_a) * 1e3), float(np.median(times_b) * 1e3)


def export_args(model: str, h: int, w: int, **kw: Any) -> argparse.Namespace:
    """``cvgl-ros export`` arguments for ``model`` at ``h`` x ``w`` px (random weights)."""
    base: dict[str, Any] = dict(
        model=model,
        height=h,
        width=w,
        checkpoint="",
        backbone_weights="",
        backbone_id="dinov2_vits14",
        aerial_height=0,
        aerial_width=0,
        depth_weights="",
        variant="small",
        metric=False,
        max_depth_m=80.0,
        random_weights=True,
        num_layers=0,
    )
    base.update(kw)
    return argparse.Namespace(**base)


def _latency_rows(
    name: str, spec: Any, tmp: Path, repeats: int, rss_model: str = ""
) -> list[dict[str, Any]]:
    from cvgl_ros.backends.ort_backend import OrtBackend
    from cvgl_ros.backends.torch_backend import TorchBackend
    from cvgl_ros.tools.export import export_onnx

    rows: list[dict[str, Any]] = []
    onnx = export_onnx(spec, tmp / f"{name.split()[0]}.onnx")
    with (
        TorchBackend(
            spec.module, tuple(spec.inputs), spec.output_names, num_threads=NUM_THREADS
        ) as tb,
        OrtBackend(onnx, num_threads=NUM_THREADS) as ob,
    ):
        torch_ms, ort_ms = _paired_median_ms(
            lambda: tb.run(spec.inputs), lambda: ob.run(spec.inputs), repeats
        )
    shapes = " ".join(f"{k}{list(v.shape)}" for k, v in spec.inputs.items())
    rows.append(
        {
            "name": f"{name} torch cpu",
            "metric": "median_ms",
            "value": torch_ms,
            "notes": f"{shapes}, {NUM_THREADS} threads",
        }
    )
    rows.append(
        {
            "name": f"{name} onnxruntime cpu",
            "metric": "median_ms",
            "value": ort_ms,
            "baseline": f"{name} torch cpu",
            "ratio": ort_ms / torch_ms,
            "notes": "TorchScript export, opset 17",
        }
    )
    import torch

    if torch.cuda.is_available():  # GPU rows whenever a GPU is present
        with TorchBackend(
            spec.module, tuple(spec.inputs), spec.output_names, device="cuda", fp16=True
        ) as gb:
            gpu_ms = median_ms(lambda: gb.run(spec.inputs), repeats, warmup=3)
        rows.append(
            {
                "name": f"{name} torch cuda fp16",
                "metric": "median_ms",
                "value": gpu_ms,
                "baseline": f"{name} torch cpu",
                "ratio": gpu_ms / torch_ms,
                "notes": torch.cuda.get_device_name(0),
            }
        )
    if rss_model:
        for backend in ("torch", "onnxruntime"):
            rss = _rss_in_subprocess(backend, rss_model, spec, onnx)
            rows.append(
                {
                    "name": f"{name} {backend}",
                    "metric": "rss_mb",
                    "value": rss,
                    "notes": "fresh process: load + one inference",
                }
            )
    return rows


_RSS_SCRIPT = """
import sys, numpy as np
from cvgl_ros.tools.benchmarks.models import export_args, rss_mb
backend, model, onnx = sys.argv[1], sys.argv[2], sys.argv[5]
h, w = int(sys.argv[3]), int(sys.argv[4])
if backend == "torch":
    import torch
    torch.set_num_threads(2)
    from cvgl_ros.tools.export import build_spec
    import transformers
    base = rss_mb()
    spec = build_spec(export_args(model, h, w))
    with torch.inference_mode():
        spec.module(*[torch.from_numpy(v) for v in spec.inputs.values()])
else:
    import onnxruntime as ort
    base = rss_mb()
    opts = ort.SessionOptions(); opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
    feed = {i.name: np.random.rand(*i.shape).astype(np.float32) for i in sess.get_inputs()}
    sess.run(None, feed)
print(rss_mb() - base)
"""


def _rss_in_subprocess(backend: str, model: str, spec: Any, onnx: Path) -> float:
    """RSS growth (MiB) of a fresh Python process that loads ``model`` and runs it once."""
    import subprocess
    import sys

    h, w = next(iter(spec.inputs.values())).shape[-2:]
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, backend, model, str(h), str(w), str(onnx)],
        capture_output=True,
        text=True,
        check=False,
        env={**__import__("os").environ, "OMP_NUM_THREADS": str(NUM_THREADS)},
    )
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return float("nan")


def _orthophoto(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """The SpaceNet Atlanta orthophoto (2-98 % stretch) if ../shared/data exists, else a
    blurred-noise texture of the same size."""
    import cv2

    from cvgl_ros.tools.realdata import shared_data_dir

    tif = shared_data_dir() / "spacenet_solaris_samples" / "sample_geotiff.tif"
    if tif.is_file():
        import rasterio

        with rasterio.open(tif) as ds:
            band = ds.read(1).astype(np.float64)
        lo, hi = np.percentile(band, [2, 98])
        gray = np.clip((band - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), "SpaceNet Atlanta 0.5 m/px"
    noise = cv2.GaussianBlur((rng.random((900, 900)) * 255).astype(np.uint8), (7, 7), 2.0)
    return np.repeat(noise[:, :, None], 3, axis=2), "synthetic texture (no shared data)"


def _rotated_view(image: np.ndarray, angle_deg: float) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_deg, 1.0)
    m[:, 2] += (np.array([640, 480]) - np.array([w, h])) / 2.0
    return cv2.warpAffine(image, m, (640, 480))


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the models suite; returns benchmark rows."""
    import torch

    from cvgl_ros.backends.base import open_backend
    from cvgl_ros.core.types import AerialPatch
    from cvgl_ros.models.checkpoint import MatcherCheckpointConfig, load_matcher_checkpoint
    from cvgl_ros.models.checkpoint import save_matcher_checkpoint as save_ck
    from cvgl_ros.models.classical import ClassicalMatcher
    from cvgl_ros.models.config import LearnedMatcherConfig
    from cvgl_ros.models.learned import LearnedMatcher
    from cvgl_ros.models.networks import FeaturesNetwork, random_checkpoint_tensors
    from cvgl_ros.tools.export import build_spec

    torch.set_num_threads(NUM_THREADS)
    repeats = 3 if quick else 10
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_str:
        tmp = Path(tmp_str)
        for model, size, label in (
            ("backbone", 224, "dinov2_vits14 224x224"),
            ("depth", 266, "depth_anything_v2_small 266x266"),
        ):
            spec = build_spec(export_args(model, size, size))
            params = sum(p.numel() for p in spec.module.parameters())
            rows.append(
                {
                    "name": f"{label} parameters",
                    "metric": "params_m",
                    "value": params / 1e6,
                    "notes": "float32",
                }
            )
            rows += _latency_rows(label, spec, tmp, repeats, rss_model=model)
            del spec
            gc.collect()
        spec = build_spec(export_args("features", 224, 224))
        rows += _latency_rows("features (vits14+head) 224x224", spec, tmp, repeats)
        del spec

        # Learned matcher: aerial-cache hit vs miss (torch, ViT-S, ground 224, aerial 518).
        cfg = MatcherCheckpointConfig(ground_size_px=(224, 224), aerial_size_px=(518, 518))
        save_ck(tmp / "ck", cfg, random_checkpoint_tensors(cfg))
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
        rng = np.random.default_rng(0)
        ground = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        aerial = rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
        valid = np.ones((1024, 1024), bool)
        counter = iter(range(10**6))

        def miss() -> None:
            lat = 10.0 + next(counter) * 1e-6  # a new patch every call
            matcher.match(ground, AerialPatch(aerial, 0.3, lat, 20.0, valid, "bench"))

        fixed = AerialPatch(aerial, 0.3, 9.0, 20.0, valid, "bench")
        miss_ms, hit_ms = _paired_median_ms(
            miss, lambda: matcher.match(ground, fixed), max(3, repeats // 2)
        )
        rows.append(
            {
                "name": "learned matcher, aerial cache miss",
                "metric": "median_ms",
                "value": miss_ms,
                "notes": "torch cpu, ground 224 + aerial 518 px",
            }
        )
        rows.append(
            {
                "name": "learned matcher, aerial cache hit",
                "metric": "median_ms",
                "value": hit_ms,
                "baseline": "learned matcher, aerial cache miss",
                "ratio": hit_ms / miss_ms,
                "goal": "hit << miss",
            }
        )

        # Classical matcher (default SIFT): a rotated 640x480 view vs the whole orthophoto.
        ortho, source = _orthophoto(rng)
        patch = AerialPatch(ortho, 0.5, 1.0, 2.0, np.ones(ortho.shape[:2], bool), "b")
        frame = _rotated_view(ortho, 30.0)
        cm = ClassicalMatcher()
        cold_ms, warm_ms = _paired_median_ms(
            lambda: ClassicalMatcher().match(frame, patch),
            lambda: cm.match(frame, patch),
            max(3, repeats // 2),
        )
        rows.append(
            {
                "name": "classical sift match (cache miss)",
                "metric": "median_ms",
                "value": cold_ms,
                "notes": f"640x480 view, 30 deg, vs {ortho.shape[1]} px {source}",
            }
        )
        rows.append(
            {
                "name": "classical sift match (cache hit)",
                "metric": "median_ms",
                "value": warm_ms,
                "baseline": "classical sift match (cache miss)",
                "ratio": warm_ms / cold_ms,
            }
        )
    rows += learned_frame_rows(quick)
    return rows


# --- learned frame end to end, aerial cache hit -------------------------------------------

FRAME_SIZE_PX = (480, 640)
FRAME_GROUND_PX = (224, 224)
FRAME_AERIAL_PX = (518, 518)
FRAME_DEPTH_PX = (266, 266)
FRAME_PATCH_PX = 1024
FRAME_STAGES: tuple[str, ...] = (
    "patch",
    "match",
    "match.ground_net",
    "match.matching",
    "depth",
    "depth.net",
    "lift",
    "ransac",
    "total",
)


def export_learned_frame_models(tmp: Path) -> dict[str, str]:
    """Random-weight DINOv2 ViT-S/14 (HF directory), matcher checkpoint, Depth Anything V2
    Small (HF directory) and their ONNX exports (ground 224, aerial 518, depth 266) in ``tmp``.
    """
    import torch

    from cvgl_ros.models.checkpoint import MatcherCheckpointConfig, load_matcher_checkpoint
    from cvgl_ros.models.checkpoint import save_matcher_checkpoint as save_ck
    from cvgl_ros.models.depth import build_depth_network, load_depth_anything
    from cvgl_ros.models.learned import AERIAL_FEATURES_STEM, GROUND_FEATURES_STEM
    from cvgl_ros.models.networks import (
        FeaturesNetwork,
        random_checkpoint_tensors,
        torch_dinov2_random,
    )
    from cvgl_ros.tools.export import ExportSpec, export_onnx

    torch.manual_seed(0)
    cfg = MatcherCheckpointConfig(ground_size_px=FRAME_GROUND_PX, aerial_size_px=FRAME_AERIAL_PX)
    save_ck(tmp / "ck", cfg, random_checkpoint_tensors(cfg))
    torch_dinov2_random("dinov2_vits14").save_pretrained(tmp / "dino")
    net = FeaturesNetwork.from_checkpoint(load_matcher_checkpoint(tmp / "ck"), tmp / "dino")
    engines = tmp / "engines"
    for stem, (h, w) in (
        (GROUND_FEATURES_STEM, FRAME_GROUND_PX),
        (AERIAL_FEATURES_STEM, FRAME_AERIAL_PX),
    ):
        spec = ExportSpec(net, {"images": np.zeros((1, 3, h, w), np.float32)}, ("descriptors",))
        export_onnx(spec, engines / f"{stem}.onnx")
    del net
    depth = load_depth_anything(None, "small")
    depth.save_pretrained(tmp / "depth_anything")
    h, w = FRAME_DEPTH_PX
    spec = ExportSpec(
        build_depth_network(depth), {"images": np.zeros((1, 3, h, w), np.float32)}, ("depth",)
    )
    export_onnx(spec, engines / "depth_anything_v2_small.onnx")
    del depth, spec
    gc.collect()
    return {
        "checkpoint": str(tmp / "ck"),
        "dino": str(tmp / "dino"),
        "depth_weights": str(tmp / "depth_anything"),
        "engine_dir": str(engines),
        "depth_onnx": str(engines / "depth_anything_v2_small.onnx"),
    }


class _FixedPatchSource:
    """A :class:`~cvgl_ros.core.interfaces.PatchSource` double that serves one patch object
    (the aerial feature cache then hits on every frame after the first)."""

    def __init__(self, patch: Any) -> None:
        self.patch = patch
        self.calls = 0

    def patch_at(self, lat_deg: float, lon_deg: float) -> Any:
        del lat_deg, lon_deg
        self.calls += 1
        return self.patch


class PlausibleDepth:
    """Wraps the depth provider: its values (from RANDOM weights: noise, often NaN) are mapped
    into 2-50 m keeping their order, so that lifting, RANSAC and the covariance run on every
    frame as they would with real weights. The network itself runs unchanged."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def depth_at(self, image: Any, camera: Any, pixels_px: Any, gravity: Any) -> np.ndarray:
        d = np.asarray(self.provider.depth_at(image, camera, pixels_px, gravity), np.float64)
        ok = np.isfinite(d)
        out = np.full(d.shape, 10.0)
        if ok.any():
            lo, hi = float(d[ok].min()), float(d[ok].max())
            out[ok] = 2.0 + 48.0 * (d[ok] - lo) / max(hi - lo, 1e-12)
        return out


def learned_frame_child(argv: list[str]) -> dict[str, Any]:
    """Time ``frames`` learned frames through the core Localizer in this process.

    Args:
        argv: ``[variant, files_json, frames]``: ``"onnxruntime"``, ``"onnxruntime-int8"``
            (dynamically quantized copies) or ``"torch"``,
            the JSON of :func:`export_learned_frame_models`, timed frames (after two warm-up
            frames: the aerial cache miss and one hit).

    Returns:
        ``{"stages_ms": {stage: median}, "frames_per_s", "peak_rss_mb", "statuses",
        "torch_imported", "depth_runs", "aerial_runs", "cache"}``.
    """
    import sys

    import cv2

    from cvgl_ros.core.camera import PinholeCamera
    from cvgl_ros.core.config import LocalizerConfig
    from cvgl_ros.core.localizer import Localizer
    from cvgl_ros.core.mount import gravity_from_camera_for_mount
    from cvgl_ros.core.types import AerialPatch, GnssPrior
    from cvgl_ros.models.config import (
        DepthConfig,
        DepthModelConfig,
        LearnedMatcherConfig,
        MatcherConfig,
    )
    from cvgl_ros.models.factory import build_depth, build_matcher

    variant, files, frames = argv[0], json.loads(argv[1]), int(argv[2])
    backend, int8 = variant.removesuffix("-int8"), variant.endswith("-int8")
    cv2.setNumThreads(1)
    use_torch = backend == "torch"
    matcher: Any = build_matcher(
        MatcherConfig(
            kind="learned",
            learned=LearnedMatcherConfig(
                checkpoint_path=files["checkpoint"],
                backbone_weights_path=files["dino"] if use_torch else "",
                backend=backend,  # type: ignore[arg-type]
                engine_dir=files["engine_dir"],
                top_k=512,
                num_threads=NUM_THREADS,
                int8=int8,
            ),
        )
    )
    depth: Any = build_depth(
        DepthConfig(
            kind="model",
            model=DepthModelConfig(
                weights_path=files["depth_weights"] if use_torch else "",
                backend=backend,  # type: ignore[arg-type]
                engine_path="" if use_torch else files["depth_onnx"],
                input_size_px=FRAME_DEPTH_PX,
                num_threads=NUM_THREADS,
                int8=int8,
            ),
        )
    )
    rng = np.random.default_rng(0)
    ortho, _ = _orthophoto(rng)
    aerial = np.asarray(
        cv2.resize(ortho, (FRAME_PATCH_PX, FRAME_PATCH_PX), interpolation=cv2.INTER_AREA),
        dtype=np.uint8,
    )
    patch = AerialPatch(aerial, 0.3, 33.75, -84.39, np.ones(aerial.shape[:2], bool), "bench")
    source = _FixedPatchSource(patch)
    localizer = Localizer(LocalizerConfig(), matcher, PlausibleDepth(depth), source)
    h, w = FRAME_SIZE_PX
    camera = PinholeCamera(w, h, 500.0, 500.0, (w - 1) / 2.0, (h - 1) / 2.0)
    gravity = gravity_from_camera_for_mount("forward", pitch_rad=0.2)
    images = [_rotated_view(ortho, 7.0 * i) for i in range(frames + 2)]
    stages: dict[str, list[float]] = {k: [] for k in FRAME_STAGES}
    statuses: dict[str, int] = {}
    wall: list[float] = []
    cpu: list[float] = []
    for i, image in enumerate(images):
        prior = GnssPrior(33.75, -84.39, np.diag([25.0, 25.0]), stamp_s=0.1 * i)
        start, start_cpu = time.perf_counter(), time.process_time()
        est = localizer.localize(image, camera, prior, gravity, stamp_s=0.1 * i)
        elapsed = time.perf_counter() - start
        if i < 2:  # warm-up: the aerial cache miss, then the first hit
            continue
        wall.append(elapsed)
        cpu.append(time.process_time() - start_cpu)
        statuses[est.status.value] = statuses.get(est.status.value, 0) + 1
        sub = {
            "match.ground_net": matcher.last_latency_s.get("ground", float("nan")),
            "match.matching": matcher.last_latency_s.get("matching", float("nan")),
            "depth.net": depth.last_latency_s if "depth" in est.timings_s else float("nan"),
        }
        for stage in FRAME_STAGES:
            sec = est.timings_s.get(stage, sub.get(stage, float("nan")))
            stages[stage].append(1e3 * sec)
    return {
        "stages_ms": {
            k: float(np.nanmedian(v)) for k, v in stages.items() if np.isfinite(v).any()
        },
        "frames_per_s": len(wall) / float(np.sum(wall)),
        "median_frame_ms": float(np.median(wall) * 1e3),
        "min_frame_ms": float(np.min(wall) * 1e3),
        "cpu_ms_per_frame": float(np.median(cpu) * 1e3),
        "peak_rss_mb": peak_rss_mb(),
        "statuses": statuses,
        "torch_imported": "torch" in sys.modules,
        "depth_runs": depth.runs,
        "cache": matcher.cache.stats(),
        "patch_source_calls": source.calls,
    }


_FRAME_SCRIPT = """
import json, sys
from cvgl_ros.tools.benchmarks.models import learned_frame_child
print(json.dumps(learned_frame_child(sys.argv[1:])))
"""


def _run_frame_child(backend: str, files: dict[str, str], frames: int) -> dict[str, Any]:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _FRAME_SCRIPT, backend, json.dumps(files), str(frames)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": str(NUM_THREADS)},
    )
    try:
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return result


def learned_frame_rows(quick: bool) -> list[dict[str, Any]]:
    """Rows "learned frame, cache hit": ONNX Runtime (the default CPU backend when exported
    files exist), ONNX Runtime with INT8 dynamic quantization, and torch (the baseline), end to
    end through the core Localizer: FPS, per-stage medians and peak RSS of a fresh process."""
    from cvgl_ros.backends.ort_backend import int8_model_path

    rows: list[dict[str, Any]] = []
    variants = ("torch", "onnxruntime", "onnxruntime-int8")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp_str:
        files = export_learned_frame_models(Path(tmp_str))
        for onnx in Path(files["engine_dir"]).glob("*.onnx"):
            if not onnx.name.endswith(".int8.onnx"):
                int8_model_path(onnx)  # quantize here, outside the timed child
        gc.collect()
        load = os.getloadavg()[0]
        for variant in variants:
            frames = (3 if quick else 8) if variant == "torch" else (6 if quick else 20)
            results[variant] = _run_frame_child(variant, files, frames)
        load_after = os.getloadavg()[0]
    base = "learned frame, cache hit torch"
    torch_res = results["torch"]
    for variant in variants:
        res = results[variant]
        name = f"learned frame, cache hit {variant}"
        if "error" in res:
            rows.append(
                {"name": name, "metric": "frames_per_s", "value": math.nan, "notes": res["error"]}
            )
            continue
        row: dict[str, Any] = {
            "name": name,
            "metric": "frames_per_s",
            "value": res["frames_per_s"],
            "goal": "" if variant == "torch" else ">= 4 Hz",
            "notes": (
                f"640x480, ViT-S/14 224 + DA-V2-S 266, aerial 518 cached; median frame "
                f"{res['median_frame_ms']:.0f} ms, min {res['min_frame_ms']:.0f} ms, CPU "
                f"{res['cpu_ms_per_frame']:.0f} ms/frame; statuses {res['statuses']}; cache "
                f"{res['cache']}; depth runs {res['depth_runs']}; torch imported "
                f"{res['torch_imported']}; load avg {load:.2f} -> {load_after:.2f}"
            ),
        }
        if variant != "torch" and "error" not in torch_res:
            row["baseline"] = base
            row["ratio"] = res["frames_per_s"] / torch_res["frames_per_s"]
        rows.append(row)
        for stage, ms in res["stages_ms"].items():
            stage_row: dict[str, Any] = {
                "name": f"{name} stage {stage}",
                "metric": "median_ms",
                "value": ms,
            }
            ref = torch_res.get("stages_ms", {}).get(stage)
            if variant != "torch" and ref:
                stage_row["baseline"] = f"{base} stage {stage}"
                stage_row["ratio"] = ms / ref
            rows.append(stage_row)
        rows.append(
            {
                "name": f"{name} peak RSS",
                "metric": "peak_rss_mb",
                "value": res["peak_rss_mb"],
                "goal": "" if variant == "torch" else "<= 1024 MB",
                "notes": "fresh process: models loaded, cache miss + hits",
            }
        )
    return rows
