"""ONNX Runtime backend options: INT8 dynamic quantization (created once, reused), thread
spinning, and the argument checks around them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from cvgl_ros.backends import ort_backend  # noqa: E402
from cvgl_ros.backends.base import open_backend  # noqa: E402
from cvgl_ros.backends.errors import BackendError  # noqa: E402
from cvgl_ros.backends.ort_backend import OrtBackend, int8_model_path  # noqa: E402


def _mlp(path: Path, dim: int = 64, seed: int = 0) -> Path:
    """images (1, dim) -> output relu(x W1 + b) W2: two MatMuls that quantization rewrites."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((dim, dim)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(dim).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((dim, 8)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["images", "w1"], ["h"]),
            helper.make_node("Add", ["h", "b1"], ["hb"]),
            helper.make_node("Relu", ["hb"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["output"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, dim])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8])],
        initializer=[w1, b1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_int8_copy_is_created_once_and_close_to_float32(tmp_path: Path) -> None:
    src = _mlp(tmp_path / "mlp.onnx")
    dst = int8_model_path(src)
    assert dst == tmp_path / "mlp.int8.onnx" and dst.is_file()
    stamp = dst.stat().st_mtime_ns
    assert int8_model_path(src) == dst and dst.stat().st_mtime_ns == stamp, "reused"
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert "MatMul" not in ops and ops & {"MatMulInteger", "DynamicQuantizeMatMul"}
    x = {"images": np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)}
    with OrtBackend(src) as fp32, open_backend("onnxruntime", src, int8=True) as q:
        assert isinstance(q, OrtBackend) and q.path == dst
        ref, got = fp32.run(x)["output"], q.run(x)["output"]
    assert not np.array_equal(ref, got), "the quantized model really runs"
    assert np.linalg.norm(got - ref) < 0.05 * np.linalg.norm(ref)
    # A newer source is re-quantized.
    os.utime(src, ns=(stamp + 10**9, stamp + 10**9))
    assert int8_model_path(src).stat().st_mtime_ns > stamp


def test_int8_copy_falls_back_to_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ro").mkdir()
    src = _mlp(tmp_path / "ro" / "mlp.onnx")
    real_replace = os.replace

    def replace(a: str | Path, b: str | Path) -> None:
        if Path(b).parent == src.parent:
            raise PermissionError("read-only model directory")
        real_replace(a, b)

    monkeypatch.setattr(ort_backend.os, "replace", replace)
    monkeypatch.setattr(ort_backend.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    dst = int8_model_path(src)
    assert dst.parent == tmp_path / "tmp" / "cvgl_ros_int8" and dst.is_file()
    assert int8_model_path(src) == dst


def test_option_errors(tmp_path: Path) -> None:
    src = _mlp(tmp_path / "mlp.onnx")
    with pytest.raises(ValueError, match="int8"):
        open_backend("torch", object(), int8=True)
    with pytest.raises(ValueError, match="int8"):
        open_backend("onnxruntime", src, device="cuda", int8=True)
    with pytest.raises(BackendError, match="cpu"):
        OrtBackend(src, device="cuda", int8=True)
    with pytest.raises(BackendError, match="not found"):
        int8_model_path(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(BackendError, match="quantize"):
        int8_model_path(bad)


@pytest.mark.parametrize("spinning", [False, True])
def test_spinning_option_gives_the_same_results(tmp_path: Path, spinning: bool) -> None:
    src = _mlp(tmp_path / "mlp.onnx")
    x = {"images": np.ones((1, 64), np.float32)}
    with OrtBackend(src, allow_spinning=spinning, cpu_mem_arena=not spinning) as b:
        out = b.run(x)["output"]
        assert b.last_latency_s > 0
    with OrtBackend(src) as ref:
        np.testing.assert_array_equal(out, ref.run(x)["output"])


def test_model_configs_validate_int8() -> None:
    from cvgl_ros.models.config import DepthModelConfig, LearnedMatcherConfig

    assert LearnedMatcherConfig().backend == "auto" and DepthModelConfig().backend == "auto"
    LearnedMatcherConfig(int8=True)
    DepthModelConfig(int8=True, backend="onnxruntime", engine_path="d.onnx")
    with pytest.raises(ValueError, match="int8"):
        LearnedMatcherConfig(int8=True, backend="torch")
    with pytest.raises(ValueError, match="int8"):
        DepthModelConfig(int8=True, device="cuda")
    with pytest.raises(ValueError, match="int8"):
        LearnedMatcherConfig(int8=1)  # type: ignore[arg-type]
