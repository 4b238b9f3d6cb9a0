"""``cvgl-ros build-engine``: build a TensorRT 10 engine from an ONNX file, with a manifest.

Writes ``NAME.engine`` and ``NAME.manifest.json`` beside the ONNX file (or ``--out``), and
reuses ``NAME.timing.cache`` across builds on the same GPU. Run it on the machine that will
use the engine (an engine is tied to its GPU and TensorRT version).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.backends.errors import MissingExtraError, require
from cvgl_ros.backends.manifest import (
    EngineManifest,
    TensorSpec,
    manifest_path,
    sha256_file,
)
from cvgl_ros.backends.trt_backend import retain_primary_context, runtime_info

LOGGER = logging.getLogger(__name__)
CALIB_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def calibration_batches(
    calib_dir: Path, shape: tuple[int, ...], limit: int = 64
) -> list[np.ndarray]:
    """Images of ``calib_dir`` prepared like the runtime does: (1, 3, H, W) float32 in [0, 1].

    Raises:
        ValueError: no readable image in ``calib_dir`` or an input that is not (1, 3, H, W).
    """
    import cv2

    from cvgl_ros.models.preprocess import prepare_image

    if len(shape) != 4 or shape[0] != 1 or shape[1] != 3:
        raise ValueError(f"INT8 calibration needs an image input (1, 3, H, W), got {shape}")
    files = sorted(p for p in calib_dir.iterdir() if p.suffix.lower() in CALIB_SUFFIXES)[:limit]
    batches = []
    for f in files:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            LOGGER.warning("calibration: cannot read %s, skipped", f)
            continue
        batches.append(prepare_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (shape[2], shape[3])))
    if not batches:
        raise ValueError(
            f"no readable calibration images ({', '.join(CALIB_SUFFIXES)}) in {calib_dir}"
        )
    return batches


def _make_calibrator(trt: Any, cuda: Any, batches: list[np.ndarray], cache_path: Path) -> Any:
    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self._batches = list(batches)
            self._device = cuda.mem_alloc(batches[0].nbytes)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if not self._batches:
                return None
            cuda.memcpy_htod(self._device, np.ascontiguousarray(self._batches.pop(0)))
            return [int(self._device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_path.write_bytes(bytes(cache))

    return Calibrator()


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    precision: str = "fp16",
    workspace_mb: int = 2048,
    calib_dir: Path | None = None,
    trt: Any = None,
    cuda: Any = None,
) -> EngineManifest:
    """Build ``engine_path`` from ``onnx_path`` and write its manifest.

    Args:
        onnx_path: the exported ONNX file (fixed input shapes).
        engine_path: where to write the engine.
        precision: ``fp32``, ``fp16`` or ``int8`` (int8 also enables fp16 fallback).
        workspace_mb: builder workspace limit, MiB.
        calib_dir: images for INT8 calibration (required for ``int8``).
        trt: the ``tensorrt`` module (injected in tests).
        cuda: the ``pycuda.driver`` module (injected in tests).

    Returns:
        The manifest written beside the engine.

    Raises:
        MissingExtraError: tensorrt / pycuda missing. RuntimeError: parse or build failure.
    """
    trt = trt if trt is not None else require("tensorrt", "tensorrt", "build-engine")
    cuda = cuda if cuda is not None else require("pycuda.driver", "tensorrt", "build-engine")
    if precision == "int8" and calib_dir is None:
        raise ValueError("--int8 needs --calib DIR (calibration images)")
    cuda.init()
    info = runtime_info(trt, cuda)
    ctx = retain_primary_context(cuda, 0)
    ctx.push()
    start = time.perf_counter()
    try:
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        cache_path = engine_path.with_suffix(".timing.cache")
        cache = config.create_timing_cache(
            cache_path.read_bytes() if cache_path.is_file() else b""
        )
        config.set_timing_cache(cache, ignore_mismatch=False)
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        outputs = [network.get_output(i) for i in range(network.num_outputs)]
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            batches = calibration_batches(Path(calib_dir or "."), tuple(inputs[0].shape))
            config.int8_calibrator = _make_calibrator(
                trt, cuda, batches, engine_path.with_suffix(".calib.cache")
            )
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        engine_path.write_bytes(bytes(serialized))
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    finally:
        ctx.pop()
        ctx.detach()
    manifest = EngineManifest(
        engine_file=engine_path.name,
        engine_sha256=sha256_file(engine_path),
        onnx_file=str(onnx_path),
        onnx_sha256=sha256_file(onnx_path),
        tensorrt_version=info.tensorrt_version,
        gpu_name=info.gpu_name,
        compute_capability=info.compute_capability,
        precision=precision,
        inputs=tuple(TensorSpec(t.name, tuple(int(d) for d in t.shape)) for t in inputs),
        outputs=tuple(TensorSpec(t.name, tuple(int(d) for d in t.shape)) for t in outputs),
        build_time_s=round(time.perf_counter() - start, 3),
        built_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        workspace_mb=int(workspace_mb),
    )
    manifest_path(engine_path).write_text(manifest.to_json())
    return manifest


def _main(args: argparse.Namespace) -> int:
    onnx_path = Path(args.onnx)
    if not onnx_path.is_file():
        print(f"build-engine: {onnx_path} not found (create it with cvgl-ros export)")
        return 2
    precision = "int8" if args.int8 else ("fp16" if args.fp16 else "fp32")
    engine = Path(args.out) if args.out else onnx_path.with_suffix(".engine")
    try:
        manifest = build_engine(
            onnx_path,
            engine,
            precision,
            args.workspace_mb,
            Path(args.calib) if args.calib else None,
        )
    except (MissingExtraError, ValueError, RuntimeError) as exc:
        print(f"build-engine: {exc}")
        return 2
    print(
        f"build-engine: wrote {engine} ({precision}, TensorRT {manifest.tensorrt_version}, "
        f"{manifest.gpu_name} sm {manifest.compute_capability}) in {manifest.build_time_s:.1f} s "
        f"and {manifest_path(engine)}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``build-engine`` subcommand."""
    p = sub.add_parser("build-engine", help="build a TensorRT engine + manifest from ONNX")
    p.add_argument("onnx", help="ONNX file from cvgl-ros export")
    p.add_argument("--fp16", action="store_true", help="allow FP16 kernels")
    p.add_argument("--int8", action="store_true", help="INT8 with calibration (needs --calib)")
    p.add_argument("--calib", default="", help="directory of calibration images")
    p.add_argument("--workspace-mb", type=int, default=2048, help="builder workspace, MiB")
    p.add_argument("--out", default="", help="engine path (default: ONNX path with .engine)")
    p.set_defaults(func=_main)
