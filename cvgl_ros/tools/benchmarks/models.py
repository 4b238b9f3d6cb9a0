"""Model benchmarks (CPU here; GPU rows when a GPU and the packages are present).

Rows: per-model latency torch vs ONNX Runtime at the configured sizes (DINOv2 ViT-S/14 at
224x224, its features network, Depth Anything V2 Small at 266x266), the classical matcher,
the learned matcher with an aerial-cache hit vs a miss, and resident memory (RSS) added by
each model. Random weights of the real architectures (latency does not depend on them).
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

NUM_THREADS = 2


def _rss_mb() -> float:
    """Current resident set size, MiB (Linux /proc; falls back to the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median_ms(fn: Any, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


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


def _args(model: str, h: int, w: int, **kw: Any) -> argparse.Namespace:
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
            gpu_ms = _median_ms(lambda: gb.run(spec.inputs), repeats, warmup=3)
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
from cvgl_ros.tools.benchmarks.models import _rss_mb, _args
backend, model, onnx = sys.argv[1], sys.argv[2], sys.argv[5]
h, w = int(sys.argv[3]), int(sys.argv[4])
if backend == "torch":
    import torch
    torch.set_num_threads(2)
    from cvgl_ros.tools.export import build_spec
    import transformers
    base = _rss_mb()
    spec = build_spec(_args(model, h, w))
    with torch.inference_mode():
        spec.module(*[torch.from_numpy(v) for v in spec.inputs.values()])
else:
    import onnxruntime as ort
    base = _rss_mb()
    opts = ort.SessionOptions(); opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
    feed = {i.name: np.random.rand(*i.shape).astype(np.float32) for i in sess.get_inputs()}
    sess.run(None, feed)
print(_rss_mb() - base)
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
    import os

    import cv2

    root = Path(
        os.environ.get(
            "CVGL_SHARED_DATA", Path(__file__).resolve().parents[3].parent / "shared" / "data"
        )
    )
    tif = root / "spacenet_solaris_samples" / "sample_geotiff.tif"
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
            spec = build_spec(_args(model, size, size))
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
        spec = build_spec(_args("features", 224, 224))
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
    return rows
