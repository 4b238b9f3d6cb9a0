"""Relative model paths resolve against the model directory, never the working directory."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from cvgl_ros.models import paths
from cvgl_ros.models.paths import MODEL_DIR_ENV, ModelPathError, model_dir, resolve_model_path

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an unrelated working directory (as ``ros2 launch`` from any shell does)."""
    cwd = tmp_path / "launched_from_here"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    return cwd


def test_absolute_and_home_paths_are_kept(elsewhere: Path) -> None:
    assert resolve_model_path("/opt/models/x.onnx") == Path("/opt/models/x.onnx")
    assert resolve_model_path("~/m.onnx") == Path.home() / "m.onnx"


def test_relative_paths_use_the_model_dir_variable(
    elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    assert resolve_model_path("engines") == tmp_path / "models" / "engines"
    monkeypatch.setenv(MODEL_DIR_ENV, "relative/dir")
    with pytest.raises(ModelPathError, match="absolute"):
        resolve_model_path("engines")


def test_without_the_variable_the_source_checkout_is_the_base(elsewhere: Path) -> None:
    base, origin = model_dir()
    assert base == ROOT and "checkout" in origin
    assert resolve_model_path("engines") == ROOT / "engines"
    assert resolve_model_path("engines") != elsewhere / "engines"


def test_installed_package_uses_its_share_directory(
    elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "source_checkout", lambda: None)
    share = tmp_path / "install" / "share" / "cvgl_ros"
    fake = types.ModuleType("ament_index_python.packages")

    class PackageNotFoundError(KeyError):
        pass

    def get_package_share_directory(name: str) -> str:
        if name != "cvgl_ros":
            raise PackageNotFoundError(name)
        return str(share)

    fake.PackageNotFoundError = PackageNotFoundError  # type: ignore[attr-defined]
    fake.get_package_share_directory = get_package_share_directory  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", fake)
    assert resolve_model_path("engines/depth.onnx") == share / "engines" / "depth.onnx"

    # Not in the ament index: pip's data_files under sys.prefix, else a clear error.
    def not_found(name: str) -> str:
        raise PackageNotFoundError(name)

    fake.get_package_share_directory = not_found  # type: ignore[attr-defined]
    prefix = tmp_path / "venv"
    monkeypatch.setattr(sys, "prefix", str(prefix))
    with pytest.raises(ModelPathError, match=MODEL_DIR_ENV):
        resolve_model_path("engines")
    (prefix / "share" / "cvgl_ros").mkdir(parents=True)
    (prefix / "share" / "cvgl_ros" / "package.xml").write_text("<name>cvgl_ros</name>")
    assert resolve_model_path("engines") == prefix / "share" / "cvgl_ros" / "engines"


def test_relative_engine_paths_are_found_from_any_working_directory(
    elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, identity_onnx: Any
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from cvgl_ros.models.checkpoint import (
        HeadConfig,
        MatcherCheckpointConfig,
        save_matcher_checkpoint,
    )
    from cvgl_ros.models.config import DepthConfig, DepthModelConfig, LearnedMatcherConfig
    from cvgl_ros.models.factory import build_depth
    from cvgl_ros.models.learned import LearnedMatcher
    from cvgl_ros.models.networks import random_checkpoint_tensors

    models = tmp_path / "models"
    (models / "engines").mkdir(parents=True)
    monkeypatch.setenv(MODEL_DIR_ENV, str(models))
    ck = MatcherCheckpointConfig(head=HeadConfig(hidden_dim=32, out_dim=16))
    save_matcher_checkpoint(models / "matcher", ck, random_checkpoint_tensors(ck))
    identity_onnx(models / "engines" / "matcher_ground.onnx", (1, 3, 224, 224), "descriptors")
    identity_onnx(models / "engines" / "matcher_aerial.onnx", (1, 3, 518, 518), "descriptors")
    identity_onnx(models / "engines" / "depth.onnx", (1, 3, 266, 266), "depth")
    # The defaults and relative values, launched from elsewhere: "auto" finds the ONNX files
    # (before, it looked in the working directory, found nothing and fell back to torch).
    matcher = LearnedMatcher.from_config(LearnedMatcherConfig(checkpoint_path="matcher"))
    assert type(matcher._ground).__name__ == "OrtBackend"
    assert Path(matcher._ground.path) == models / "engines" / "matcher_ground.onnx"  # type: ignore[attr-defined]
    matcher.close()
    depth = build_depth(
        DepthConfig(kind="model", model=DepthModelConfig(engine_path="engines/depth.onnx"))
    )
    assert Path(depth._backend.path) == models / "engines" / "depth.onnx"  # type: ignore[attr-defined]
    depth.close()  # type: ignore[attr-defined]
