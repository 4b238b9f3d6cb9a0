"""ONNX Runtime backend: CPU, or CUDA / TensorRT execution providers when present."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.backends.base import BackendBase, BackendError, check_shape
from cvgl_ros.models.errors import require

LOGGER = logging.getLogger(__name__)


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
    """

    def __init__(self, path: Path, device: str = "cpu", num_threads: int = 2) -> None:
        super().__init__()
        ort: Any = require("onnxruntime", "onnx", "the ONNX Runtime backend")
        if not path.is_file():
            raise BackendError(
                f"ONNX file not found: {path} (create it with: cvgl-ros export --out {path} ...)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = choose_providers(list(ort.get_available_providers()), device)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self.providers = tuple(self._session.get_providers())
        self._inputs = {i.name: list(i.shape) for i in self._session.get_inputs()}
        self.input_names = tuple(self._inputs)
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
