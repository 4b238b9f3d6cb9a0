"""Backends: selection errors, torch vs ONNX Runtime parity, manifest checks, TensorRT logic
with injected fakes (the real TensorRT path is GPU-only and skipped here)."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from cvgl_ros.backends.base import InferenceBackend, open_backend
from cvgl_ros.backends.errors import (
    BackendError,
    EngineMismatchError,
    MissingExtraError,
    ModelError,
    require,
)
from cvgl_ros.backends.manifest import (
    EngineManifest,
    RuntimeInfo,
    TensorSpec,
    check_manifest,
    manifest_path,
    read_manifest,
    sha256_file,
)
from cvgl_ros.backends.ort_backend import choose_providers
from cvgl_ros.backends.trt_backend import TensorRTBackend, bind_shapes


def test_selection_errors() -> None:
    with pytest.raises(ValueError, match="kind"):
        open_backend("tflite", None)
    with pytest.raises(ValueError, match="device"):
        open_backend("onnxruntime", "x.onnx", device="tpu")
    with pytest.raises(ValueError, match="needs device 'cuda'"):
        open_backend("tensorrt", "x.engine", device="cpu")
    with pytest.raises(ValueError, match="file path"):
        open_backend("onnxruntime", object())
    with pytest.raises(BackendError, match="cvgl-ros export"):
        open_backend("onnxruntime", "/nonexistent/model.onnx")


def test_torch_backend_errors() -> None:
    pytest.importorskip("torch")
    import torch

    with pytest.raises(ValueError, match=r"nn\.Module"):
        open_backend("torch", "model.onnx")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="no CUDA"):
            open_backend("torch", torch.nn.Identity(), device="cuda")
    with pytest.raises(BackendError, match="fp16"):
        open_backend("torch", torch.nn.Identity(), fp16=True)
    with open_backend("torch", torch.nn.Identity(), output_names=("y",)) as b:
        assert isinstance(b, InferenceBackend)
        assert np.isnan(b.last_latency_s)
        out = b.run({"images": np.ones((1, 3, 2, 2), np.float32)})
        assert set(out) == {"y"} and b.last_latency_s > 0
        with pytest.raises(BackendError, match="missing"):
            b.run({"x": np.ones(1, np.float32)})
    with pytest.raises(BackendError, match="closed"):
        b.run({"images": np.ones((1, 3, 2, 2), np.float32)})


@pytest.mark.parametrize(
    ("package", "extra"), [("tensorrt", "tensorrt"), ("onnxruntime", "onnx"), ("torch", "torch")]
)
def test_missing_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, package: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # makes the import fail
    with pytest.raises(MissingExtraError, match=rf"cvgl_ros\[{extra}\]"):
        require(package, extra, "test")


def test_models_errors_are_the_backends_errors() -> None:
    """models.errors re-exports the backends' classes: ``except ModelError`` (export, weights
    check, node start-up) still catches a backend failure or a missing extra."""
    from cvgl_ros.models import errors as model_errors

    assert model_errors.ModelError is ModelError
    assert model_errors.MissingExtraError is MissingExtraError
    assert model_errors.require is require
    for exc in (
        BackendError("x"),
        EngineMismatchError("x"),
        MissingExtraError("torch", "torch", "test"),
        model_errors.WeightsError("x"),
    ):
        assert isinstance(exc, ModelError)
    assert isinstance(MissingExtraError("torch", "torch", "test"), ImportError)


def test_tensorrt_backend_without_tensorrt_names_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingExtraError, match=r"\[tensorrt\]"):
        TensorRTBackend(tmp_path / "m.engine")


def test_choose_providers() -> None:
    assert choose_providers(["CPUExecutionProvider"], "cpu") == ["CPUExecutionProvider"]
    got = choose_providers(
        ["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"], "cuda"
    )
    assert got == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        choose_providers(["CPUExecutionProvider"], "cuda")


# --- torch vs ONNX Runtime parity -----------------------------------------------------------


def _export_args(model: str, **kw: Any) -> argparse.Namespace:
    base = dict(
        model=model, height=56, width=70, checkpoint="", backbone_weights="",
        backbone_id="dinov2_vits14", aerial_height=42, aerial_width=42, depth_weights="",
        variant="small", metric=False, max_depth_m=80.0, random_weights=True, num_layers=4,
    )  # fmt: skip
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.parametrize("model", ["features", "matcher", "depth"])
@pytest.mark.slow
def test_torch_vs_onnxruntime_parity(tmp_path: Path, model: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from cvgl_ros.tools.export import build_spec, check_parity, export_onnx

    spec = build_spec(_export_args(model))
    path = export_onnx(spec, tmp_path / f"{model}.onnx")
    report = check_parity(spec, path)
    assert report.max_abs_diff < 1e-4, report
    with open_backend("onnxruntime", path) as ort_backend:
        assert ort_backend.input_names == tuple(spec.inputs)
        bad = {k: v[:, :, :14] for k, v in spec.inputs.items()}
        with pytest.raises(BackendError, match="shape"):
            ort_backend.run(bad)


def test_export_rounds_sizes_to_patch_multiples(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from cvgl_ros.tools.export import build_spec

    spec = build_spec(_export_args("features", height=60, width=100))
    assert spec.inputs["images"].shape == (1, 3, 56, 98)


# --- manifest and TensorRT logic --------------------------------------------------------------


def _manifest(tmp_path: Path, **kw: Any) -> tuple[EngineManifest, Path]:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine-bytes")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx-bytes")
    fields: dict[str, Any] = dict(
        engine_file=engine.name, engine_sha256=sha256_file(engine), onnx_file=str(onnx),
        onnx_sha256=sha256_file(onnx), tensorrt_version="10.3.0", gpu_name="Orin",
        compute_capability="8.7", precision="fp16",
        inputs=(TensorSpec("images", (1, 3, 4, 4)),), outputs=(TensorSpec("out", (1, 3, 4, 4)),),
        build_time_s=1.0, built_utc="2026-01-01T00:00:00Z", workspace_mb=1024,
    )  # fmt: skip
    fields.update(kw)
    m = EngineManifest(**fields)
    manifest_path(engine).write_text(m.to_json())
    return m, engine


def test_manifest_round_trip_and_errors(tmp_path: Path) -> None:
    m, engine = _manifest(tmp_path)
    assert read_manifest(engine) == m
    manifest_path(engine).write_text("{}")
    with pytest.raises(BackendError, match="not a cvgl_ros engine manifest"):
        read_manifest(engine)
    manifest_path(engine).unlink()
    with pytest.raises(BackendError, match="no manifest"):
        read_manifest(engine)
    with pytest.raises(BackendError, match="build-engine"):
        read_manifest(tmp_path / "other.engine")
    with pytest.raises(ValueError, match="precision"):
        EngineManifest(**{**m.__dict__, "precision": "fp8"})


@pytest.mark.parametrize(
    ("runtime", "reason"),
    [
        (RuntimeInfo("10.4.0", "Orin", "8.7"), "TensorRT 10.3.0"),
        (RuntimeInfo("10.3.0", "RTX 4090", "8.9"), "compute capability 8.7"),
        (RuntimeInfo("10.3.0", "Orin NX", "8.7"), "built on GPU 'Orin'"),
    ],
)
def test_manifest_mismatch_refused_with_rebuild_command(
    tmp_path: Path, runtime: RuntimeInfo, reason: str
) -> None:
    m, engine = _manifest(tmp_path)
    check_manifest(m, RuntimeInfo("10.3.0", "Orin", "8.7"), engine, Path(m.onnx_file))
    with pytest.raises(EngineMismatchError, match=reason) as err:
        check_manifest(m, runtime, engine)
    assert "cvgl-ros build-engine" in str(err.value) and "--fp16" in str(err.value)


def test_manifest_detects_changed_files(tmp_path: Path) -> None:
    m, engine = _manifest(tmp_path)
    ok = RuntimeInfo("10.3.0", "Orin", "8.7")
    Path(m.onnx_file).write_bytes(b"re-exported")
    with pytest.raises(EngineMismatchError, match="changed since"):
        check_manifest(m, ok, engine, Path(m.onnx_file))
    engine.write_bytes(b"tampered")
    with pytest.raises(EngineMismatchError, match="does not match its manifest"):
        check_manifest(m, ok, engine)


def test_bind_shapes() -> None:
    specs = (TensorSpec("a", (1, 3, 4, 4)), TensorSpec("b", (1, -1)))
    got = bind_shapes(specs, {"a": np.zeros((1, 3, 4, 4)), "b": np.zeros((1, 7))})
    assert got == {"a": (1, 3, 4, 4), "b": (1, 7)}
    with pytest.raises(BackendError, match="built for"):
        bind_shapes(specs, {"a": np.zeros((1, 3, 4, 5)), "b": np.zeros((1, 7))})
    with pytest.raises(BackendError, match="missing"):
        bind_shapes(specs, {"a": np.zeros((1, 3, 4, 4))})


class _FakeBuffer:
    registry: ClassVar[dict[int, np.ndarray]] = {}

    def __init__(self, nbytes: int) -> None:
        self.array = np.zeros(nbytes, np.uint8)
        self.freed = False
        _FakeBuffer.registry[id(self)] = self.array

    def __int__(self) -> int:
        return id(self)

    def free(self) -> None:
        self.freed = True


class _FakePrimaryContext:
    """pycuda's primary context: retained (not pushed) by ``Device.retain_primary_context``,
    ``push``/``pop`` on the thread's context stack, ``detach`` releases one retain."""

    def __init__(self, stack: list[Any]) -> None:
        self.stack = stack
        self.retains = 0
        self.pushes = 0

    def push(self) -> None:
        self.pushes += 1
        self.stack.append(self)

    def pop(self) -> None:
        assert self.stack, "pop() with no current context"
        self.stack.pop()

    def detach(self) -> None:
        assert self.retains > 0, "detach() without a retain"
        self.retains -= 1


def _fake_cuda(name: str = "Orin", cc: tuple[int, int] = (8, 7)) -> Any:
    cuda = types.SimpleNamespace()
    cuda.stack = []  # the thread's current-context stack
    cuda.primary = _FakePrimaryContext(cuda.stack)
    cuda.init = lambda: None

    def retain() -> _FakePrimaryContext:
        cuda.primary.retains += 1
        return cuda.primary

    def make_context() -> Any:
        raise AssertionError("a new CUDA context per engine: use the primary context")

    cuda.Device = lambda i: types.SimpleNamespace(
        name=lambda: name,
        compute_capability=lambda: cc,
        make_context=make_context,
        retain_primary_context=retain,
    )

    def current() -> None:
        assert cuda.stack, "CUDA work with no current context"

    def pagelocked_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        current()
        return np.zeros(shape, dtype)

    def mem_alloc(nbytes: int) -> _FakeBuffer:
        current()
        return _FakeBuffer(nbytes)

    cuda.pagelocked_empty = pagelocked_empty
    cuda.mem_alloc = mem_alloc
    cuda.Stream = lambda: types.SimpleNamespace(handle=1, synchronize=current)

    def htod(dst: _FakeBuffer, src: np.ndarray, stream: Any) -> None:
        current()
        dst.array[:] = np.frombuffer(src.tobytes(), np.uint8)

    def dtoh(dst: np.ndarray, src: _FakeBuffer, stream: Any) -> None:
        current()
        dst[...] = np.frombuffer(src.array.tobytes(), dst.dtype).reshape(dst.shape)

    cuda.memcpy_htod_async = htod
    cuda.memcpy_dtoh_async = dtoh
    return cuda


class _FakeContext:
    def __init__(self) -> None:
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}

    def set_tensor_address(self, name: str, address: int) -> None:
        self.addresses[name] = address

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        self.shapes[name] = shape

    def execute_async_v3(self, stream: int) -> bool:
        src = _FakeBuffer.registry[self.addresses["images"]].view(np.float32)
        dst = _FakeBuffer.registry[self.addresses["out"]].view(np.float32)
        dst[:] = src * 2.0  # the "network"
        return True


def _fake_trt(version: str = "10.3.0") -> Any:
    engine = types.SimpleNamespace(
        get_tensor_dtype=lambda name: "float32", create_execution_context=_FakeContext
    )
    logger = types.SimpleNamespace(WARNING=2)
    return types.SimpleNamespace(
        __version__=version,
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        Runtime=lambda log: types.SimpleNamespace(deserialize_cuda_engine=lambda data: engine),
        nptype=lambda dtype: np.float32,
        _logger=logger,
    )


def test_tensorrt_backend_logic_with_fakes(tmp_path: Path) -> None:
    _, engine = _manifest(tmp_path)
    with TensorRTBackend(engine, trt=_fake_trt(), cuda=_fake_cuda()) as b:
        assert b.input_names == ("images",) and b.output_names == ("out",)
        x = np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4)
        out = b.run({"images": x})
        np.testing.assert_array_equal(out["out"], 2 * x)
        assert b.last_latency_s >= 0
        with pytest.raises(BackendError, match="built for"):
            b.run({"images": np.zeros((1, 3, 8, 8), np.float32)})
    with pytest.raises(EngineMismatchError, match="rebuild"):
        TensorRTBackend(engine, trt=_fake_trt("10.5.1"), cuda=_fake_cuda())
    with pytest.raises(EngineMismatchError, match="compute capability"):
        TensorRTBackend(engine, trt=_fake_trt(), cuda=_fake_cuda("A100", (8, 0)))


def test_tensorrt_engines_share_the_primary_context(tmp_path: Path) -> None:
    # Two engines (ground + aerial features) in one process: one retained primary context,
    # pushed only around work and released by each close; never a context of their own.
    _, engine = _manifest(tmp_path)
    cuda = _fake_cuda()
    a = TensorRTBackend(engine, trt=_fake_trt(), cuda=cuda)
    b = TensorRTBackend(engine, trt=_fake_trt(), cuda=cuda)
    assert a._ctx is b._ctx is cuda.primary
    assert cuda.primary.retains == 2 and cuda.stack == [], "not left current after open"
    x = np.ones((1, 3, 4, 4), np.float32)
    np.testing.assert_array_equal(a.run({"images": x})["out"], 2 * x)
    np.testing.assert_array_equal(b.run({"images": x})["out"], 2 * x)
    assert cuda.stack == [], "run() pops what it pushes"
    a.close()
    a.close()  # idempotent: one release only
    assert cuda.primary.retains == 1
    b.close()
    assert cuda.primary.retains == 0 and cuda.stack == []


def test_tensorrt_open_failure_releases_the_context(tmp_path: Path) -> None:
    _, engine = _manifest(tmp_path)
    cuda = _fake_cuda()
    trt = _fake_trt()
    trt.Runtime = lambda log: types.SimpleNamespace(deserialize_cuda_engine=lambda data: None)
    with pytest.raises(BackendError, match="could not deserialise"):
        TensorRTBackend(engine, trt=trt, cuda=cuda)
    assert cuda.primary.retains == 0 and cuda.stack == []


def _fake_trt_builder(version: str = "10.3.0") -> Any:
    """The TensorRT 10 builder calls build_engine makes, recording the builder flags."""
    trt = _fake_trt(version)
    tensor = types.SimpleNamespace(name="images", shape=(1, 3, 4, 4))
    out = types.SimpleNamespace(name="out", shape=(1, 3, 4, 4))
    network = types.SimpleNamespace(
        num_inputs=1, num_outputs=1, get_input=lambda i: tensor, get_output=lambda i: out
    )
    flags: list[str] = []
    cache = types.SimpleNamespace(serialize=lambda: b"timing")
    config = types.SimpleNamespace(
        set_memory_pool_limit=lambda pool, size: None,
        create_timing_cache=lambda data: cache,
        set_timing_cache=lambda c, ignore_mismatch: None,
        set_flag=flags.append,
        get_timing_cache=lambda: cache,
    )
    trt.flags = flags
    trt.Builder = lambda log: types.SimpleNamespace(
        create_network=lambda mode: network,
        create_builder_config=lambda: config,
        build_serialized_network=lambda net, cfg: b"serialized-engine",
    )
    trt.OnnxParser = lambda net, log: types.SimpleNamespace(parse=lambda data: True, num_errors=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16", INT8="int8")
    return trt


def test_build_engine_uses_the_primary_context_and_writes_a_manifest(tmp_path: Path) -> None:
    from cvgl_ros.tools.build_engine import build_engine

    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx-bytes")
    cuda, trt = _fake_cuda(), _fake_trt_builder()
    manifest = build_engine(onnx_path, tmp_path / "m.engine", "fp16", 512, trt=trt, cuda=cuda)
    assert trt.flags == ["fp16"] and (tmp_path / "m.engine").read_bytes() == b"serialized-engine"
    assert cuda.primary.pushes == 1 and cuda.primary.retains == 0 and cuda.stack == []
    assert manifest.inputs == (TensorSpec("images", (1, 3, 4, 4)),)
    # The engine it wrote opens on the same machine (manifest, sizes, shared context).
    with TensorRTBackend(tmp_path / "m.engine", trt=_fake_trt(), cuda=cuda) as b:
        assert b.input_shapes == {"images": (1, 3, 4, 4)}


def test_tensorrt_engine_of_another_size_is_refused_at_start_up(tmp_path: Path) -> None:
    from cvgl_ros.models.config import DepthModelConfig
    from cvgl_ros.models.depth import DepthAnythingDepth

    _, engine = _manifest(
        tmp_path,
        inputs=(TensorSpec("images", (1, 3, 28, 28)),),
        outputs=(TensorSpec("out", (1, 3, 28, 28)),),
    )
    backend = TensorRTBackend(engine, trt=_fake_trt(), cuda=_fake_cuda())
    assert backend.input_shapes == {"images": (1, 3, 28, 28)}
    with pytest.raises(BackendError, match=r"m\.engine takes 28x28 px .* at 266x266 px"):
        DepthAnythingDepth(backend, DepthModelConfig(input_size_px=(266, 266)))
    depth = DepthAnythingDepth(backend, DepthModelConfig(input_size_px=(28, 28)))
    assert depth.input_size_px == (28, 28)
    depth.close()


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_engine_build_and_run_on_gpu(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT not installed (GPU machines only)")
    pytest.importorskip("pycuda.driver", reason="pycuda not installed (GPU machines only)")
    from cvgl_ros.tools.build_engine import build_engine
    from cvgl_ros.tools.export import build_spec, export_onnx

    spec = build_spec(_export_args("features"))
    onnx = export_onnx(spec, tmp_path / "f.onnx")
    build_engine(onnx, tmp_path / "f.engine", "fp16", 1024)
    with open_backend("tensorrt", tmp_path / "f.engine", device="cuda") as b:
        out = b.run(spec.inputs)
    with open_backend("onnxruntime", onnx) as o:
        ref = o.run(spec.inputs)
    assert np.abs(out["descriptors"] - ref["descriptors"]).max() < 2e-2


def test_build_engine_cli_without_tensorrt_names_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cvgl_ros.tools.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    assert main(["build-engine", str(onnx), "--fp16", "--workspace-mb", "512"]) == 2
    assert "cvgl_ros[tensorrt]" in capsys.readouterr().out
    assert main(["build-engine", str(tmp_path / "missing.onnx")]) == 2


def test_export_cli_writes_checked_onnx_and_reports_parity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from cvgl_ros.tools.cli import main

    out = tmp_path / "engines" / "head.onnx"
    rc = main(
        ["export", "--model", "head", "--height", "112", "--width", "112", "--out", str(out),
         "--random-weights"]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    assert out.is_file() and "onnx.checker ok" in text and "max abs diff" in text
    bad = ["export", "--model", "depth", "--height", "56", "--width", "56"]
    bad += ["--out", str(tmp_path / "d.onnx"), "--depth-weights", "/nonexistent"]
    assert main(bad) == 2
