"""TensorRT 10 backend: deserialise a checked engine, pycuda device buffers, one async stream,
all in the device's primary CUDA context (shared by every engine of the process).

The TensorRT- and CUDA-specific calls are confined to :class:`TensorRTBackend`; manifest checks
and shape binding are plain functions tested without a GPU. ``trt`` and ``cuda`` modules can
be passed in (tests inject fakes); by default ``tensorrt`` and ``pycuda.driver`` are imported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.backends.base import BackendBase
from cvgl_ros.backends.errors import BackendError, require
from cvgl_ros.backends.manifest import (
    EngineManifest,
    RuntimeInfo,
    TensorSpec,
    check_manifest,
    read_manifest,
)

LOGGER = logging.getLogger(__name__)


def runtime_info(trt: Any, cuda: Any, device_index: int = 0) -> RuntimeInfo:
    """TensorRT version, GPU name and compute capability of this machine."""
    device = cuda.Device(device_index)
    major, minor = device.compute_capability()
    return RuntimeInfo(
        tensorrt_version=str(trt.__version__),
        gpu_name=str(device.name()),
        compute_capability=f"{major}.{minor}",
    )


def retain_primary_context(cuda: Any, device_index: int = 0) -> Any:
    """The device's primary CUDA context, retained but not made current.

    The primary context is the one the CUDA runtime API uses, so every TensorRT engine of the
    process, torch and ONNX Runtime's CUDA provider all work in one context: no context per
    engine (each would hold its own device memory reservation and force a context switch
    between engines). Use it as ``ctx.push()`` ... ``ctx.pop()`` around GPU work on any thread,
    and ``ctx.detach()`` once when done, which releases this retain (the driver keeps the
    context alive while others hold it). pycuda >= 2016.1 (``Device.retain_primary_context``).

    Args:
        cuda: the ``pycuda.driver`` module, initialised (``cuda.init()``).
        device_index: CUDA device.
    """
    return cuda.Device(device_index).retain_primary_context()


def bind_shapes(
    specs: Sequence[TensorSpec], inputs: Mapping[str, np.ndarray]
) -> dict[str, tuple[int, ...]]:
    """Check the given inputs against the engine's input specs.

    A ``-1`` in a spec is a dynamic dimension and accepts any size.

    Returns:
        name -> concrete shape to bind.

    Raises:
        BackendError: a missing / unexpected input, a wrong rank or size.
    """
    names = [s.name for s in specs]
    missing = [n for n in names if n not in inputs]
    extra = [n for n in inputs if n not in names]
    if missing or extra:
        raise BackendError(f"engine inputs are {names}; missing {missing}, unexpected {extra}")
    out = {}
    for spec in specs:
        shape = tuple(int(d) for d in np.shape(inputs[spec.name]))
        ok = len(shape) == len(spec.shape) and all(
            e < 0 or e == g for g, e in zip(shape, spec.shape, strict=True)
        )
        if not ok:
            raise BackendError(
                f"input {spec.name!r} has shape {shape}, the engine was built for {spec.shape}; "
                "export and build an engine for this size"
            )
        out[spec.name] = shape
    return out


class TensorRTBackend(BackendBase):
    """Runs a serialised TensorRT engine after checking its manifest against this machine.

    Args:
        engine_path: ``NAME.engine`` with ``NAME.manifest.json`` beside it.
        trt: the ``tensorrt`` module (injected in tests).
        cuda: the ``pycuda.driver`` module (injected in tests).
        device_index: CUDA device.

    Raises:
        MissingExtraError: tensorrt or pycuda not installed (extra ``[tensorrt]``).
        EngineMismatchError: the engine was built elsewhere (message says how to rebuild).
        BackendError: the engine cannot be deserialised.
    """

    def __init__(
        self, engine_path: Path, trt: Any = None, cuda: Any = None, device_index: int = 0
    ) -> None:
        super().__init__()
        self._trt = (
            trt if trt is not None else require("tensorrt", "tensorrt", "the TensorRT backend")
        )
        self._cuda = (
            cuda
            if cuda is not None
            else require("pycuda.driver", "tensorrt", "the TensorRT backend")
        )
        engine_path = Path(engine_path)
        self.path = engine_path
        self.manifest: EngineManifest = read_manifest(engine_path)
        self._cuda.init()
        check_manifest(
            self.manifest,
            runtime_info(self._trt, self._cuda, device_index),
            engine_path,
            Path(self.manifest.onnx_file),
        )
        # The process-wide primary context (shared with the other engines, torch and ONNX
        # Runtime), current only while this backend works: pushed here to create the engine
        # and its buffers, and by run() / close() on whichever thread calls them.
        self._ctx = retain_primary_context(self._cuda, device_index)
        self._ctx.push()
        try:
            self._open(engine_path)
        except Exception:
            self._ctx.pop()
            self._ctx.detach()
            raise
        self._ctx.pop()

    def _open(self, engine_path: Path) -> None:
        trt, cuda = self._trt, self._cuda
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise BackendError(f"TensorRT could not deserialise {engine_path}")
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        self.input_names = tuple(t.name for t in self.manifest.inputs)
        self.output_names = tuple(t.name for t in self.manifest.outputs)
        self.input_shapes = {t.name: tuple(t.shape) for t in self.manifest.inputs}
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, Any] = {}
        for spec in (*self.manifest.inputs, *self.manifest.outputs):
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(spec.name)))
            shape = tuple(max(1, d) for d in spec.shape)
            self._host[spec.name] = cuda.pagelocked_empty(shape, dtype)
            self._device[spec.name] = cuda.mem_alloc(self._host[spec.name].nbytes)
            self._context.set_tensor_address(spec.name, int(self._device[spec.name]))

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs to the device, enqueue the engine, copy outputs back, synchronise."""
        self._check_inputs(inputs)
        shapes = bind_shapes(self.manifest.inputs, inputs)
        cuda = self._cuda
        start = time.perf_counter()
        self._ctx.push()
        try:
            for name, shape in shapes.items():
                host = self._host[name]
                if host.shape != shape:
                    raise BackendError(f"input {name!r}: dynamic shapes are not supported here")
                np.copyto(host, inputs[name], casting="same_kind")
                self._context.set_input_shape(name, shape)
                cuda.memcpy_htod_async(self._device[name], host, self._stream)
            if not self._context.execute_async_v3(self._stream.handle):
                raise BackendError("TensorRT execute_async_v3 failed")
            for name in self.output_names:
                cuda.memcpy_dtoh_async(self._host[name], self._device[name], self._stream)
            self._stream.synchronize()
        finally:
            self._ctx.pop()
        self.last_latency_s = time.perf_counter() - start
        return {n: self._host[n].astype(np.float32, copy=True) for n in self.output_names}

    def close(self) -> None:
        """Free device buffers and release this backend's retain of the primary context."""
        if self._closed:
            return
        self._ctx.push()
        try:
            for buf in self._device.values():
                buf.free()
            self._device.clear()
            self._context = None
            self._engine = None
        finally:
            self._ctx.pop()
            self._ctx.detach()
        super().close()
