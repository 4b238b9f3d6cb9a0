"""ONNX Runtime backend: CPU, or CUDA / TensorRT execution providers when present."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.backends.base import BackendBase, check_shape
from cvgl_ros.backends.errors import BackendError, require

LOGGER = logging.getLogger(__name__)

# Measured on the 2-core development machine (learned frame: ViT-S/14 224 + Depth Anything V2
# Small 266 back to back): spinning threads cost 25-60 % more CPU time per frame for no wall
# time gained under load, so they are off.
DEFAULT_ALLOW_SPINNING = False
DEFAULT_CPU_MEM_ARENA = True
# Operators quantized by :func:`int8_model_path` (the linear layers: 70-80 % of the time).
INT8_OP_TYPES: tuple[str, ...] = ("MatMul", "Gemm")


def int8_model_path(path: Path) -> Path:
    """A dynamically quantized (INT8 weights, activations quantized per run) copy of an ONNX
    model, created once and reused.

    The copy is ``NAME.int8.onnx`` beside ``path`` (rebuilt when older than ``path``), or, when
    that directory is not writable, in ``$TMPDIR/cvgl_ros_int8/``. Only MatMul / Gemm are
    quantized (ONNX Runtime ``quantize_dynamic``, signed INT8 weights).

    Measured on a 2-core AVX2 CPU with random weights: ViT-S/14 224 + head 161 -> 102 ms and
    Depth Anything V2 Small 266 289 -> 206 ms of CPU time per run; descriptors keep a cosine
    similarity >= 0.98 with the float32 ones, depth a median relative error of 0.5 %. Check
    the accuracy with real weights before deploying (``cvgl-ros eval``).

    Raises:
        BackendError: the model cannot be quantized.
    """
    src = Path(path)
    if not src.is_file():
        raise BackendError(f"ONNX file not found: {src}")
    candidates = [src.with_name(f"{src.stem}.int8.onnx")]
    digest = hashlib.sha1(f"{src.resolve()}:{src.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    candidates.append(Path(tempfile.gettempdir()) / "cvgl_ros_int8" / f"{src.stem}-{digest}.onnx")
    for dst in candidates:
        if dst.is_file() and dst.stat().st_mtime_ns >= src.stat().st_mtime_ns:
            return dst
    quantization: Any = require("onnxruntime.quantization", "onnx", "INT8 quantization")
    last_error: Exception | None = None
    for dst in candidates:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
            quantization.quantize_dynamic(
                str(src),
                str(tmp),
                weight_type=quantization.QuantType.QInt8,
                op_types_to_quantize=list(INT8_OP_TYPES),
            )
            os.replace(tmp, dst)
        except OSError as exc:
            last_error = exc
            continue
        except Exception as exc:  # onnx / onnxruntime raise their own types
            raise BackendError(f"cannot quantize {src} to INT8: {exc}") from exc
        LOGGER.info("INT8 copy of %s written to %s", src.name, dst)
        return dst
    raise BackendError(f"cannot write an INT8 copy of {src}: {last_error}")


def choose_providers(available: list[str], device: str) -> list[str]:
    """Execution providers in preference order for ``device``.

    On ``"cuda"``: TensorRT EP, then CUDA EP, each only when ONNX Runtime has it, then CPU.

    Raises:
        BackendError: ``"cuda"`` requested but neither GPU provider is available.
    """
    if device == "cpu":
        return ["CPUExecutionProvider"]
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if not gpu:
        raise BackendError(
            "device 'cuda' requested but this onnxruntime has no CUDA/TensorRT execution "
            f"provider (available: {available}); install onnxruntime-gpu"
        )
    return [*gpu, "CPUExecutionProvider"]


class OrtBackend(BackendBase):
    """An ``onnxruntime.InferenceSession`` with explicit thread counts.

    Args:
        path: the ``.onnx`` file.
        device: ``"cpu"`` or ``"cuda"``.
        num_threads: intra-op threads (inter-op is 1: the graphs here are sequential).
        allow_spinning: let idle intra-op threads busy-wait for work. Off by default: a frame
            runs two or three sessions back to back plus numpy work, and on a small CPU the
            idle threads of one session spinning steal the cores the next one needs.
        cpu_mem_arena: keep ONNX Runtime's CPU memory arena (faster allocation, higher
            resident memory).
        int8: run the dynamically quantized copy of the model (CPU only; see
            :func:`int8_model_path`).
    """

    def __init__(
        self,
        path: Path,
        device: str = "cpu",
        num_threads: int = 2,
        allow_spinning: bool = DEFAULT_ALLOW_SPINNING,
        cpu_mem_arena: bool = DEFAULT_CPU_MEM_ARENA,
        int8: bool = False,
    ) -> None:
        super().__init__()
        ort: Any = require("onnxruntime", "onnx", "the ONNX Runtime backend")
        if not path.is_file():
            raise BackendError(
                f"ONNX file not found: {path} (create it with: cvgl-ros export --out {path} ...)"
            )
        if int8:
            if device != "cpu":
                raise BackendError("int8 (dynamic quantization) is for device 'cpu' only")
            path = int8_model_path(path)
        self.path = path
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = bool(cpu_mem_arena)
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if allow_spinning else "0"
        )
        providers = choose_providers(list(ort.get_available_providers()), device)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self.providers = tuple(self._session.get_providers())
        self._inputs = {i.name: list(i.shape) for i in self._session.get_inputs()}
        self.input_names = tuple(self._inputs)
        # Symbolic (str) or unknown (None) dimensions are dynamic: -1.
        self.input_shapes = {
            name: tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims)
            for name, dims in self._inputs.items()
        }
        self.output_names = tuple(o.name for o in self._session.get_outputs())
        LOGGER.info("onnxruntime %s on %s", path.name, self.providers)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the session; see :meth:`InferenceBackend.run`."""
        self._check_inputs(inputs)
        feed = {}
        for name in self.input_names:
            arr = np.ascontiguousarray(inputs[name], dtype=np.float32)
            check_shape(name, arr.shape, self._inputs[name])
            feed[name] = arr
        start = time.perf_counter()
        outs = self._session.run(list(self.output_names), feed)
        self.last_latency_s = time.perf_counter() - start
        return dict(zip(self.output_names, (np.asarray(o) for o in outs), strict=True))

    def close(self) -> None:
        """Drop the session."""
        self._session = None
        super().close()
