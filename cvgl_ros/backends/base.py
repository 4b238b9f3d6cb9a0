"""The ``InferenceBackend`` protocol and backend selection (errors: :mod:`.errors`).

A backend runs one network: named float32 numpy inputs -> named numpy outputs. It is a context
manager (``with open_backend(...) as b:``) that releases its session / engine / device buffers
on exit, and records the wall time of its last ``run`` in ``last_latency_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from cvgl_ros.backends.errors import BackendError, MissingExtraError

LOGGER = logging.getLogger(__name__)

BACKEND_KINDS: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")


@runtime_checkable
class InferenceBackend(Protocol):
    """Runs one network on named numpy arrays.

    Attributes:
        input_names: names ``run`` expects, in the network's order.
        output_names: names ``run`` returns, in the network's order.
        last_latency_s: wall time of the last ``run`` call, seconds (NaN before the first).
    """

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    last_latency_s: float

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the network.

        Args:
            inputs: every name of ``input_names`` -> array of the network's shape (float32).

        Returns:
            Every name of ``output_names`` -> numpy array (host memory).
        """
        ...

    def close(self) -> None:
        """Release sessions, engines and device memory (idempotent)."""
        ...

    def __enter__(self) -> InferenceBackend: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


_B = TypeVar("_B", bound="BackendBase")


class BackendBase:
    """Shared context-manager plumbing and input checks for the concrete backends.

    Attributes:
        input_shapes: the fixed input shape of each input name, ``-1`` for a dynamic
            dimension; empty when the backend cannot tell before running (torch).
    """

    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the network; implemented by each backend."""
        raise NotImplementedError

    def __init__(self) -> None:
        self.last_latency_s = float("nan")
        self.input_shapes: dict[str, tuple[int, ...]] = {}
        self._closed = False

    def __enter__(self: _B) -> _B:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release resources; subclasses extend this."""
        self._closed = True

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        if self._closed:
            raise BackendError(f"{type(self).__name__} is closed")
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.input_names]
        if missing or extra:
            raise BackendError(
                f"inputs must be exactly {list(self.input_names)}; missing {missing}, "
                f"unexpected {extra}"
            )


def check_shape(name: str, got: Sequence[int], expected: Sequence[int | str | None]) -> None:
    """Raise :class:`BackendError` unless ``got`` fits ``expected`` (str/None/-1 = any)."""
    if len(got) != len(expected) or any(
        isinstance(e, int) and e >= 0 and int(g) != e for g, e in zip(got, expected, strict=False)
    ):
        raise BackendError(f"input {name!r} has shape {tuple(got)}, expected {tuple(expected)}")


def check_image_input_size(
    backend: InferenceBackend, size_px: tuple[int, int], what: str, fix: str
) -> None:
    """Refuse, at start-up, a backend whose fixed image input is not ``size_px``.

    An exported ONNX file or TensorRT engine has its input size baked in; run with another
    configured size, every frame would fail the per-run shape check. Backends that do not
    know their input shape before running (torch, test doubles) are accepted.

    Args:
        backend: an opened backend; its first input is the image (1, 3, H, W).
        size_px: (height, width) the caller will feed, pixels.
        what: the configuration it serves, for the message (``"matcher ground images"``).
        fix: how to resolve it, for the message (the export command, the parameter to set).

    Raises:
        BackendError: naming the file, both sizes and ``fix``.
    """
    shapes: Mapping[str, Sequence[int]] = getattr(backend, "input_shapes", None) or {}
    if not backend.input_names or backend.input_names[0] not in shapes:
        return
    name = backend.input_names[0]
    shape = tuple(int(d) for d in shapes[name])
    if len(shape) != 4:
        return
    file_h, file_w = shape[2], shape[3]
    want_h, want_w = int(size_px[0]), int(size_px[1])
    if (0 <= file_h != want_h) or (0 <= file_w != want_w):
        source = getattr(backend, "path", None) or type(backend).__name__
        raise BackendError(
            f"{source} takes {file_h}x{file_w} px images (input {name!r} {shape}), but "
            f"{what} are configured at {want_h}x{want_w} px; {fix}"
        )


def open_backend(
    kind: str,
    model: Any,
    *,
    device: str = "cpu",
    fp16: bool = False,
    num_threads: int = 2,
    input_names: Sequence[str] = ("images",),
    output_names: Sequence[str] = ("output",),
    int8: bool = False,
) -> InferenceBackend:
    """Open a backend of ``kind`` for ``model``.

    Args:
        kind: ``"torch"`` (``model`` is a ``torch.nn.Module``), ``"onnxruntime"`` (``model``
            is an ``.onnx`` path) or ``"tensorrt"`` (``model`` is an ``.engine`` path with its
            ``.manifest.json`` beside it).
        model: the module or file.
        device: ``"cpu"`` or ``"cuda"``.
        fp16: half precision (torch on CUDA; TensorRT engines carry their own precision).
        num_threads: CPU threads (torch / ONNX Runtime intra-op).
        input_names: names of the module's positional inputs (torch only; files carry theirs).
        output_names: names of the module's outputs (torch only).
        int8: ONNX Runtime on CPU only: run a dynamically quantized INT8 copy of the model
            (see :func:`cvgl_ros.backends.ort_backend.int8_model_path`).

    Raises:
        ValueError: unknown ``kind`` / ``device`` or a model of the wrong type.
        MissingExtraError: the backend's package is not installed (names the extra).
        BackendError: the file cannot be opened, or the device is unavailable.
    """
    if kind not in BACKEND_KINDS:
        raise ValueError(f"backend kind must be one of {BACKEND_KINDS}, got {kind!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if int8 and (kind != "onnxruntime" or device != "cpu"):
        raise ValueError("int8 needs backend 'onnxruntime' on device 'cpu'")
    if kind == "torch":
        from cvgl_ros.backends.torch_backend import TorchBackend

        return TorchBackend(
            model,
            input_names=input_names,
            output_names=output_names,
            device=device,
            fp16=fp16,
            num_threads=num_threads,
        )
    if not isinstance(model, str | Path):
        raise ValueError(f"backend {kind!r} needs a file path, got {type(model).__name__}")
    if kind == "onnxruntime":
        from cvgl_ros.backends.ort_backend import OrtBackend

        return OrtBackend(Path(model), device=device, num_threads=num_threads, int8=int8)
    if device != "cuda":
        raise ValueError("backend 'tensorrt' needs device 'cuda'")
    from cvgl_ros.backends.trt_backend import TensorRTBackend

    return TensorRTBackend(Path(model))


def resolve_backend_kind(
    kind: str,
    device: str,
    onnx_paths: Sequence[Path] = (),
    engine_paths: Sequence[Path] = (),
) -> str:
    """The concrete backend for a configured ``kind``, resolving ``"auto"``.

    ``"auto"`` means the preferred backend whose files and package are present: TensorRT on
    ``"cuda"`` when every ``engine_paths`` file exists and tensorrt imports; ONNX Runtime when
    every ``onnx_paths`` file exists and onnxruntime imports; else torch. Other kinds are
    returned unchanged. Why ONNX Runtime on CPU (2-core AVX2 machine, learned frame ViT-S/14
    224 + Depth Anything V2 Small 266): float32 it needs ~10 % less CPU per frame than torch
    and ~100 MB less memory, never imports torch, offers INT8 (``int8=True``, ~1.5x), and its
    non-spinning thread pool degrades far less than torch's OpenMP pool when other processes
    load the CPU.

    Args:
        kind: ``"auto"``, ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``.
        device: ``"cpu"`` or ``"cuda"``.
        onnx_paths: the exported ``.onnx`` files the ONNX Runtime backend would open.
        engine_paths: the ``.engine`` files the TensorRT backend would open.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind != "auto":
        if kind not in BACKEND_KINDS:
            raise ValueError(
                f"backend kind must be 'auto' or one of {BACKEND_KINDS}, got {kind!r}"
            )
        return kind
    import importlib.util

    def ready(paths: Sequence[Path], package: str) -> bool:
        return (
            bool(paths)
            and all(Path(p).is_file() for p in paths)
            and importlib.util.find_spec(package) is not None
        )

    if device == "cuda" and ready(engine_paths, "tensorrt"):
        chosen = "tensorrt"
    elif ready(onnx_paths, "onnxruntime"):
        chosen = "onnxruntime"
    else:
        chosen = "torch"
    LOGGER.info("backend 'auto' -> %s", chosen)
    return chosen


def available_backends() -> dict[str, str]:
    """Backend kind -> ``"ok"`` or the reason it is unavailable (for self-checks)."""
    import importlib

    out: dict[str, str] = {}
    for kind, packages, extra in (
        ("torch", ("torch",), "torch"),
        ("onnxruntime", ("onnxruntime",), "onnx"),
        ("tensorrt", ("tensorrt", "pycuda.driver"), "tensorrt"),
    ):
        reason = "ok"
        for package in packages:
            try:
                importlib.import_module(package)
            except Exception as exc:  # any failure (ImportError, missing CUDA lib) = unusable
                reason = str(MissingExtraError(package.split(".")[0], extra, f"backend {kind}"))
                LOGGER.debug("backend %s unavailable: %s", kind, exc)
                break
        out[kind] = reason
    return out
