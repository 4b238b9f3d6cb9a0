"""The GPU check that ``scripts/gpu_check.sh`` runs on a lent GPU machine.

One learned frame (640x480 camera image, 518 px aerial patch) through randomly initialised
ViT-S/14 networks of the real architectures on every GPU path this machine offers, each
compared with the CPU float32 result of the same weights and timed:

1. ``torch-cuda-fp16``: the learned matcher (DINOv2 ViT-S/14 224 + head, aerial 518) and
   Depth Anything V2 Small 266 on the torch backend, CUDA, half precision;
2. ``onnxruntime-cuda``: the exported ONNX files on ONNX Runtime's CUDA execution provider
   (when the installed onnxruntime has it: ``onnxruntime-gpu``);
3. ``tensorrt-fp16``: ``cvgl-ros build-engine`` (fp16) of the same ONNX files and the
   TensorRT runner, both engines open at once beside torch's CUDA work (one shared primary
   context), when ``tensorrt`` and ``pycuda`` import.

Each item gives a row (``ok`` with medians and the difference to CPU float32, ``skip`` with
the reason, or ``fail`` with the error); the rows go to ``OUT/gpu_check.json``. Exit status 1
only when an item fails. ``--cpu-smoke`` runs items 1 and 2 on the CPU with 2-layer networks
(the test suite's check of this module's plumbing, not a measurement).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

GROUND_PX = (224, 224)
AERIAL_PX = (518, 518)
DEPTH_PX = (266, 266)
FRAME_HW = (480, 640)


def _median_ms(fn: Callable[[], Any], runs: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up (allocations, kernel selection)
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return round(1e3 * statistics.median(times), 3)


def _run_once(backend: Any, images: np.ndarray) -> None:
    backend.run({"images": images})


def _cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    a2 = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b2 = b.reshape(-1, b.shape[-1]).astype(np.float64)
    num = (a2 * b2).sum(1)
    den = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1) + 1e-12
    return round(float((num / den).min()), 5)


def _rel_median(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return round(float(np.median(np.abs(a64 - b64) / np.maximum(np.abs(b64), 1e-6))), 6)


class _Networks:
    """Random ViT-S networks, their ONNX exports and CPU float32 references."""

    def __init__(self, work: Path, num_layers: int | None) -> None:
        import torch

        from cvgl_ros.backends.base import open_backend
        from cvgl_ros.models.checkpoint import MatcherCheckpoint, MatcherCheckpointConfig
        from cvgl_ros.models.depth import build_depth_network, load_depth_anything
        from cvgl_ros.models.networks import FeaturesNetwork, random_checkpoint_tensors
        from cvgl_ros.models.preprocess import prepare_image
        from cvgl_ros.tools.export import ExportSpec, export_onnx

        torch.manual_seed(0)
        kwargs: dict[str, Any] = {"num_layers": num_layers} if num_layers else {}
        config = MatcherCheckpointConfig(ground_size_px=GROUND_PX, aerial_size_px=AERIAL_PX)
        self.checkpoint = MatcherCheckpoint(config, random_checkpoint_tensors(config))
        self.features = FeaturesNetwork.from_checkpoint(self.checkpoint, None, **kwargs)
        self.depth = build_depth_network(load_depth_anything(None, "small", **kwargs))
        rng = np.random.default_rng(0)
        self.frame = rng.integers(0, 255, (*FRAME_HW, 3), dtype=np.uint8)
        self.aerial = rng.integers(0, 255, (*AERIAL_PX, 3), dtype=np.uint8)
        self.inputs = {
            "ground": prepare_image(self.frame, GROUND_PX),
            "aerial": prepare_image(self.aerial, AERIAL_PX),
            "depth": prepare_image(self.frame, DEPTH_PX),
        }
        self.onnx: dict[str, Path] = {}
        for name, module, output in (
            ("ground", self.features, "descriptors"),
            ("aerial", self.features, "descriptors"),
            ("depth", self.depth, "depth"),
        ):
            spec = ExportSpec(module, {"images": self.inputs[name]}, (output,))
            stem = {"ground": "matcher_ground", "aerial": "matcher_aerial"}.get(name, name)
            self.onnx[name] = export_onnx(spec, work / f"{stem}.onnx")
        self.reference: dict[str, np.ndarray] = {}
        for name, module, output in (
            ("ground", self.features, "descriptors"),
            ("aerial", self.features, "descriptors"),
            ("depth", self.depth, "depth"),
        ):
            with open_backend("torch", module, output_names=(output,)) as b:
                self.reference[name] = b.run({"images": self.inputs[name]})[output]

    def patch(self) -> Any:
        from cvgl_ros.core.types import AerialPatch

        valid = np.ones(AERIAL_PX, dtype=bool)
        return AerialPatch(self.aerial, 0.3, 47.37, 8.54, valid, "gpu_check")

    def compare(self, name: str, got: np.ndarray) -> dict[str, float]:
        ref = self.reference[name]
        if name == "depth":
            return {f"{name}_median_rel_diff": _rel_median(got, ref)}
        return {f"{name}_min_cosine": _cosine_min(got, ref)}


def check_torch(nets: _Networks, device: str, fp16: bool, runs: int) -> dict[str, Any]:
    """The learned frame on the torch backend (CUDA fp16 on a GPU machine)."""
    import copy

    import torch

    from cvgl_ros.backends.base import open_backend
    from cvgl_ros.models.config import DepthModelConfig, LearnedMatcherConfig
    from cvgl_ros.models.depth import DepthAnythingDepth
    from cvgl_ros.models.learned import LearnedMatcher

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    features = open_backend(
        "torch", copy.deepcopy(nets.features), device=device, fp16=fp16,
        output_names=("descriptors",),
    )  # fmt: skip
    depth_net = open_backend(
        "torch", copy.deepcopy(nets.depth), device=device, fp16=fp16, output_names=("depth",)
    )
    matcher = LearnedMatcher(
        features,
        features,
        nets.checkpoint,
        LearnedMatcherConfig(device=device, fp16=fp16),  # type: ignore[arg-type]
    )
    depth = DepthAnythingDepth(
        depth_net,
        DepthModelConfig(input_size_px=DEPTH_PX, device=device, fp16=fp16),  # type: ignore[arg-type]
    )
    row: dict[str, Any] = {}
    for name, backend in (("ground", features), ("aerial", features), ("depth", depth_net)):
        out = backend.run({"images": nets.inputs[name]})[backend.output_names[0]]
        row.update(nets.compare(name, out))
        row[f"{name}_net_ms"] = _median_ms(
            partial(_run_once, backend, nets.inputs[name]), runs, sync
        )
    patch = nets.patch()
    first = matcher.match(nets.frame, patch)  # aerial cache miss; the timed frames hit it

    def frame() -> None:
        corr = matcher.match(nets.frame, patch)
        depth.forget_last_image()  # a new camera frame: the depth network runs every time
        depth.depth_at(nets.frame, None, corr.ground_px, np.eye(3))  # type: ignore[arg-type]

    row["frame_ms"] = _median_ms(frame, runs, sync)
    row["frame_hz"] = round(1e3 / row["frame_ms"], 2)
    row["correspondences"] = len(first.weights)
    if device == "cuda":
        row["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    matcher.close()
    depth.close()
    return row


def check_onnxruntime(nets: _Networks, device: str, runs: int) -> dict[str, Any]:
    """The exported ONNX files on ONNX Runtime (CUDA execution provider on a GPU machine)."""
    from cvgl_ros.backends.ort_backend import OrtBackend

    row: dict[str, Any] = {}
    for name, path in nets.onnx.items():
        with OrtBackend(path, device=device, num_threads=4) as backend:
            row.setdefault("providers", list(backend.providers))
            out = backend.run({"images": nets.inputs[name]})[backend.output_names[0]]
            row.update(nets.compare(name, out))
            row[f"{name}_net_ms"] = _median_ms(
                partial(_run_once, backend, nets.inputs[name]), runs, lambda: None
            )
    if device == "cuda" and row["providers"][0] == "CPUExecutionProvider":
        raise RuntimeError(f"ONNX Runtime fell back to the CPU: {row['providers']}")
    return row


def check_tensorrt(nets: _Networks, work: Path, runs: int) -> dict[str, Any]:
    """fp16 engines from the ONNX files, all open at once, beside torch's CUDA context use."""
    import torch

    from cvgl_ros.backends.trt_backend import TensorRTBackend
    from cvgl_ros.tools.build_engine import build_engine

    torch.zeros(1, device="cuda")  # torch's runtime holds the primary context too
    row: dict[str, Any] = {}
    engines = {}
    for name, onnx_path in nets.onnx.items():
        manifest = build_engine(onnx_path, work / f"{onnx_path.stem}.engine", "fp16", 4096)
        row[f"{name}_build_s"] = manifest.build_time_s
        row.setdefault("tensorrt", manifest.tensorrt_version)
        engines[name] = TensorRTBackend(work / f"{onnx_path.stem}.engine")
    try:
        for name, backend in engines.items():
            out = backend.run({"images": nets.inputs[name]})[backend.output_names[0]]
            row.update(nets.compare(name, out))
            row[f"{name}_net_ms"] = _median_ms(
                partial(_run_once, backend, nets.inputs[name]), runs, lambda: None
            )
        # torch still works in the shared context after the engines ran.
        row["torch_after_engines"] = float(torch.ones(4, device="cuda").sum().item())
    finally:
        for backend in engines.values():
            backend.close()
    return row


def _available(module: str) -> str:
    """ "" when ``module`` imports, else why not."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        return f"{module} does not import ({type(exc).__name__}: {exc})".splitlines()[0]
    return ""


def plan(cpu_smoke: bool) -> dict[str, str]:
    """Item -> "" (runs) or the reason it is skipped, from what imports here."""
    reasons: dict[str, str] = {}
    torch_reason = _available("torch") or _available("transformers")
    cuda = ""
    if not torch_reason and not cpu_smoke:
        import torch

        if not torch.cuda.is_available():
            cuda = "torch sees no CUDA GPU"
    base = torch_reason or cuda
    reasons["torch-cuda-fp16"] = base
    ort = _available("onnxruntime") or _available("onnx")
    if not ort and not cpu_smoke:
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            ort = (
                "this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu); "
                f"it has {onnxruntime.get_available_providers()}"
            )
    reasons["onnxruntime-cuda"] = base or ort
    trt = _available("tensorrt") or _available("pycuda.driver") or _available("onnx")
    reasons["tensorrt-fp16"] = "not in --cpu-smoke" if cpu_smoke else (base or trt)
    return reasons


def run(out_dir: Path, runs: int, cpu_smoke: bool) -> int:
    """Run every item that can run here; write ``gpu_check.json``; 1 when an item failed."""
    reasons = plan(cpu_smoke)
    rows: list[dict[str, Any]] = []
    machine: dict[str, Any] = {"python": platform.python_version(), "cpu_smoke": cpu_smoke}
    for module in ("torch", "transformers", "onnxruntime", "tensorrt"):
        if importlib.util.find_spec(module) is not None and not _available(module):
            machine[module] = str(getattr(sys.modules[module], "__version__", "?"))
    runnable = [item for item, why in reasons.items() if not why]
    nets = None
    with tempfile.TemporaryDirectory(prefix="cvgl_gpu_check_") as tmp:
        work = Path(tmp)
        if runnable:
            import torch

            torch.set_num_threads(4)
            if torch.cuda.is_available():
                machine["gpu"] = torch.cuda.get_device_name(0)
                machine["cuda"] = torch.version.cuda
            try:
                nets = _Networks(work, num_layers=4 if cpu_smoke else None)
            except Exception as exc:  # the networks cannot even be built: every item fails
                for item in runnable:
                    reasons[item] = ""
                    rows.append({"item": item, "status": "fail", "error": repr(exc)})
                runnable = []
                traceback.print_exc()
        device = "cpu" if cpu_smoke else "cuda"
        for item, why in reasons.items():
            if why:
                print(f"SKIP {item}: {why}")
                rows.append({"item": item, "status": "skip", "reason": why})
                continue
            if item not in runnable or nets is None:
                continue
            try:
                if item == "torch-cuda-fp16":
                    row = check_torch(nets, device, fp16=not cpu_smoke, runs=runs)
                elif item == "onnxruntime-cuda":
                    row = check_onnxruntime(nets, device, runs)
                else:
                    row = check_tensorrt(nets, work, runs)
                rows.append({"item": item, "status": "ok", **row})
                print(f"OK   {item}: {json.dumps(row)}")
            except Exception as exc:  # report and go on with the next item
                traceback.print_exc()
                rows.append({"item": item, "status": "fail", "error": repr(exc)})
                print(f"FAIL {item}: {exc!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine, "rows": rows}
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_dir / 'gpu_check.json'}")
    return 1 if any(r["status"] == "fail" for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m cvgl_ros.tools.gpu_check [--out DIR] [--runs N] [--cpu-smoke]``."""
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-check-out", help="directory for gpu_check.json")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per measurement")
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="plumbing check on the CPU (tests only)"
    )
    args = parser.parse_args(argv)
    return run(Path(args.out), max(1, args.runs), args.cpu_smoke)


if __name__ == "__main__":
    sys.exit(main())
