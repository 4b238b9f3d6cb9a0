"""Every YAML and launch file in the package parses; launch files name real things."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
YAML_FILES = sorted(ROOT.glob("config/*.yaml"))
LAUNCH_FILES = sorted(ROOT.glob("launch/*.launch.py"))


def test_there_are_config_and_launch_files() -> None:
    assert (ROOT / "config" / "default.yaml") in YAML_FILES
    assert LAUNCH_FILES


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_yaml_parses_as_ros_parameter_file(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and data, f"{path} is empty"
    for node_name, body in data.items():
        assert isinstance(body, dict) and "ros__parameters" in body, (
            f"{path}: '{node_name}' lacks ros__parameters"
        )


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_parses_and_defines_generate(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in names
