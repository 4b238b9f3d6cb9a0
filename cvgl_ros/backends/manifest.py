"""TensorRT engine manifests: what an engine was built from and for (no TensorRT import).

An engine is valid only for the GPU model (compute capability), the TensorRT version and the
ONNX file it was built with. ``NAME.manifest.json`` beside ``NAME.engine`` records them;
:func:`check_manifest` refuses a mismatch with a message telling how to rebuild.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cvgl_ros.backends.errors import BackendError, EngineMismatchError

MANIFEST_FORMAT = "cvgl_ros.engine"
MANIFEST_VERSION = 1
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class TensorSpec:
    """One engine input or output: name, shape (fixed ints), dtype name (``float32``...)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class RuntimeInfo:
    """What the running machine offers: TensorRT version, GPU name, compute capability."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


@dataclass(frozen=True)
class EngineManifest:
    """Contents of ``NAME.manifest.json``.

    Attributes:
        engine_file: engine file name (beside the manifest).
        engine_sha256: digest of the engine bytes.
        onnx_file: path of the ONNX file the engine was built from.
        onnx_sha256: digest of that ONNX file.
        tensorrt_version: TensorRT version that built it (``10.3.0``).
        gpu_name: ``cudaGetDeviceProperties().name`` of the build GPU.
        compute_capability: ``"major.minor"`` of the build GPU.
        precision: ``fp32``, ``fp16`` or ``int8``.
        inputs: input tensors in binding order.
        outputs: output tensors.
        build_time_s: seconds the build took.
        built_utc: ISO 8601 build time.
        workspace_mb: workspace limit used for the build, MiB.
    """

    engine_file: str
    engine_sha256: str
    onnx_file: str
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    build_time_s: float
    built_utc: str
    workspace_mb: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_json(self) -> str:
        """JSON text of the manifest."""
        data = asdict(self)
        data["format"] = MANIFEST_FORMAT
        data["version"] = MANIFEST_VERSION
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EngineManifest:
        """Parse manifest JSON.

        Raises:
            BackendError: not a manifest, unsupported version or missing fields.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BackendError(f"engine manifest is not valid JSON: {exc}") from exc
        if data.pop("format", None) != MANIFEST_FORMAT:
            raise BackendError("not a cvgl_ros engine manifest")
        if data.pop("version", None) != MANIFEST_VERSION:
            raise BackendError(
                f"unsupported engine manifest version (this reads {MANIFEST_VERSION})"
            )
        try:
            data["inputs"] = tuple(
                TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in data["inputs"]
            )
            data["outputs"] = tuple(
                TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in data["outputs"]
            )
            return cls(**data)
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"malformed engine manifest: {exc}") from exc


def manifest_path(engine_path: Path) -> Path:
    """``NAME.engine`` -> ``NAME.manifest.json``."""
    return engine_path.with_suffix(".manifest.json")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(engine_path: Path) -> EngineManifest:
    """Read the manifest beside ``engine_path``.

    Raises:
        BackendError: the engine or its manifest is missing or malformed.
    """
    if not engine_path.is_file():
        raise BackendError(
            f"TensorRT engine not found: {engine_path}; build it on this machine with: "
            f"cvgl-ros build-engine {engine_path.with_suffix('.onnx')} --fp16"
        )
    mpath = manifest_path(engine_path)
    if not mpath.is_file():
        raise BackendError(
            f"{engine_path} has no manifest ({mpath.name}); rebuild it with: "
            f"cvgl-ros build-engine {engine_path.with_suffix('.onnx')} --fp16"
        )
    return EngineManifest.from_json(mpath.read_text())


def check_manifest(
    manifest: EngineManifest,
    runtime: RuntimeInfo,
    engine_path: Path,
    onnx_path: Path | None = None,
) -> None:
    """Refuse an engine that does not fit this machine.

    Checks, in order: the engine bytes match the manifest, the TensorRT version is identical,
    the GPU compute capability and name match, and (when ``onnx_path`` exists) the ONNX file
    is the one the engine was built from.

    Raises:
        EngineMismatchError: with the reason and the command that rebuilds the engine.
    """
    rebuild = (
        f"rebuild it on this machine with: cvgl-ros build-engine {manifest.onnx_file} "
        f"--{manifest.precision} --workspace-mb {manifest.workspace_mb}"
    )
    problems = []
    if sha256_file(engine_path) != manifest.engine_sha256:
        problems.append(f"{engine_path.name} does not match its manifest (file changed)")
    if runtime.tensorrt_version != manifest.tensorrt_version:
        problems.append(
            f"built with TensorRT {manifest.tensorrt_version}, this machine has "
            f"{runtime.tensorrt_version}"
        )
    if runtime.compute_capability != manifest.compute_capability:
        problems.append(
            f"built for compute capability {manifest.compute_capability} "
            f"({manifest.gpu_name}), this GPU is {runtime.compute_capability} ({runtime.gpu_name})"
        )
    elif runtime.gpu_name != manifest.gpu_name:
        problems.append(f"built on GPU '{manifest.gpu_name}', this GPU is '{runtime.gpu_name}'")
    if (
        onnx_path is not None
        and onnx_path.is_file()
        and sha256_file(onnx_path) != manifest.onnx_sha256
    ):
        problems.append(f"{onnx_path} changed since the engine was built")
    if problems:
        raise EngineMismatchError(
            f"refusing TensorRT engine {engine_path}: " + "; ".join(problems) + f". {rebuild}"
        )
