"""What a robot install needs for the learned path: setup.py extras, the message naming a
missing package, and the ONNX export on every torch the extras allow."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from cvgl_ros.models.errors import MissingExtraError

ROOT = Path(__file__).resolve().parents[3]


def _extras() -> dict[str, list[Requirement]]:
    """setup.py's extras_require, read statically."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            value = ast.literal_eval(node.value)
            return {k: [Requirement(r) for r in v] for k, v in value.items()}
    raise AssertionError("setup.py has no extras_require")


def _requirement(extra: str, name: str) -> Requirement:
    found = [r for r in _extras()[extra] if r.name == name]
    assert found, f"extra [{extra}] does not install {name}"
    return found[0]


@pytest.mark.parametrize("extra", ["torch", "onnx", "tensorrt"])
def test_every_learned_extra_installs_safetensors(extra: str) -> None:
    # The ONNX Runtime / TensorRT paths read the matcher checkpoint without torch.
    assert _requirement(extra, "safetensors").specifier.contains("0.4.0")


def test_tensorrt_is_bounded_to_the_api_the_runner_is_written_against() -> None:
    spec = _requirement("tensorrt", "tensorrt").specifier
    assert spec.contains("10.3.0") and spec.contains("10.13.0")
    assert not spec.contains("11.0.0") and not spec.contains("9.2.0")


def test_readme_robot_install_installs_safetensors() -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("## On a robot")
    section = text[start : text.index("colcon build", start)]
    assert "safetensors" in section, "the robot's pip line must install safetensors"


def test_missing_safetensors_names_the_pip_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cvgl_ros.models.checkpoint import load_matcher_checkpoint

    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(MissingExtraError) as err:
        load_matcher_checkpoint(tmp_path / "matcher")
    message = str(err.value)
    assert "'safetensors'" in message and "pip install 'safetensors>=0.4'" in message
    # Not the torch extra: on a Jetson that would pull torch from PyPI over JetPack's.
    assert "cvgl_ros[torch]" not in message


# --- export on torch 2.1-2.4 (no dynamo parameter) and >= 2.5 ------------------------------


def test_exporter_kwargs_follow_the_installed_signature() -> None:
    from cvgl_ros.tools.export import torchscript_exporter_kwargs

    def new_export(model: Any, args: Any, f: Any, *, dynamo: bool = True) -> None: ...

    def old_export(model: Any, args: Any, f: Any, opset_version: int = 17) -> None: ...

    assert torchscript_exporter_kwargs(new_export) == {"dynamo": False}
    assert torchscript_exporter_kwargs(old_export) == {}
    assert torchscript_exporter_kwargs(len) in ({}, {"dynamo": False})  # no crash on builtins


@pytest.mark.parametrize("has_dynamo", [False, True])
def test_export_runs_on_torch_with_and_without_the_dynamo_parameter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, has_dynamo: bool
) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from cvgl_ros.tools.export import ExportSpec, export_onnx

    real_export = torch.onnx.export
    seen: list[dict[str, Any]] = []

    def torch_2_4_export(
        model: Any,
        args: Any,
        f: Any,
        input_names: Any = None,
        output_names: Any = None,
        opset_version: Any = None,
        do_constant_folding: bool = True,
    ) -> None:
        seen.append({"opset_version": opset_version})
        real_export(
            model,
            args,
            f,
            input_names=input_names,
            output_names=output_names,
            opset_version=opset_version,
            do_constant_folding=do_constant_folding,
            dynamo=False,
        )

    def torch_2_5_export(
        model: Any, args: Any, f: Any, *, dynamo: bool = True, **kwargs: Any
    ) -> None:
        seen.append({"dynamo": dynamo})
        real_export(model, args, f, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", torch_2_5_export if has_dynamo else torch_2_4_export)
    import numpy as np

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
    spec = ExportSpec(module, {"images": np.zeros((1, 3, 14, 14), np.float32)}, ("out",))
    out = export_onnx(spec, tmp_path / "m.onnx")
    assert out.is_file()
    assert seen == ([{"dynamo": False}] if has_dynamo else [{"opset_version": 17}])
