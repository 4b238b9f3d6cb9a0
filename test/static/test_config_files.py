"""Every YAML and launch file in the package parses; launch files name real things; every
parameter in every config file is one the node declares, with the right type.

``ros2 launch`` cannot run here (no launch packages in the wheels), so launch files are checked
statically: parsed with ``ast``, the ``Node(...)`` calls' package/executable must be ours and
exist as console scripts, and every config file they or the docs name must exist.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# robot_localization's example parameters: test/static/test_robot_localization_config.py.
OTHER_NODES_YAML = {"robot_localization_ekf.yaml"}
YAML_FILES = sorted(p for p in ROOT.glob("config/*.yaml") if p.name not in OTHER_NODES_YAML)
LAUNCH_FILES = sorted(ROOT.glob("launch/*.launch.py"))
# Nodes of other packages a launch file may start: package -> executables.
OTHER_EXECUTABLES = {"robot_localization": {"ekf_node", "ukf_node", "navsat_transform_node"}}


def _console_scripts() -> dict[str, str]:
    """``name -> module:function`` of setup.py's console_scripts (read statically)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    scripts: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "=" in node.value:
            m = re.fullmatch(r"\s*([\w.-]+)\s*=\s*([\w.]+:\w+)\s*", node.value)
            if m:
                scripts[m.group(1)] = m.group(2)
    return scripts


def _node_parameters(data: dict[str, Any]) -> dict[str, Any]:
    from cvgl_ros.ros.params import flatten

    values: dict[str, Any] = {}
    for body in data.values():
        values.update(flatten(body["ros__parameters"]))
    return values


def test_there_are_config_and_launch_files() -> None:
    assert (ROOT / "config" / "default.yaml") in YAML_FILES
    assert {p.name for p in YAML_FILES} >= {
        "default.yaml",
        "drone_nadir.yaml",
        "vehicle_forward.yaml",
    }
    assert LAUNCH_FILES


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_yaml_parses_as_ros_parameter_file(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and data, f"{path} is empty"
    for node_name, body in data.items():
        assert isinstance(body, dict) and "ros__parameters" in body, (
            f"{path}: '{node_name}' lacks ros__parameters"
        )
        assert str(node_name).rstrip("/").endswith("cvgl_node") or node_name in ("/**", "**")


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_every_config_parameter_is_declared_with_its_type(path: Path) -> None:
    from cvgl_ros.ros.params import PARAMETERS, check_value, declared_names

    values = _node_parameters(yaml.safe_load(path.read_text()))
    assert values
    declared = set(declared_names({**values, "tiles.source": "/data/ortho.tif"}))
    for name, value in values.items():
        assert name in PARAMETERS, f"{path.name}: '{name}' is not a parameter of cvgl_node"
        assert name in declared, f"{path.name}: '{name}' is not declared for this file's kinds"
        spec = PARAMETERS[name]
        if spec.kind == "float":
            # rcl reads '5' as an integer; the node converts, but the files should say 5.0.
            assert isinstance(value, float), f"{path.name}: {name} should be a float: {value!r}"
        elif spec.kind == "int":
            assert isinstance(value, int) and not isinstance(value, bool), (
                f"{path.name}: {name} should be an integer: {value!r}"
            )
        check_value(spec, value)  # raises ParameterError naming the parameter


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_every_config_file_validates_into_the_component_configs(path: Path) -> None:
    from cvgl_ros.ros.params import configs_from_params

    values = _node_parameters(yaml.safe_load(path.read_text()))
    values["tiles.source"] = "/data/ortho.tif"  # the presets leave the map to the user
    configs = configs_from_params(values)
    assert configs.tiles is not None
    assert configs.node.map_frame == "map"
    if path.name == "drone_nadir.yaml":
        assert configs.matcher.kind == "classical" and configs.node.camera_mount == "nadir"
        # The values the real-frame evaluation measured (docs/EVALUATION.md), as parameters
        # and through the classical matcher's drone preset.
        loc, classical = configs.localizer, configs.matcher.classical
        assert loc.view.adaptive and loc.ransac.inlier_threshold_m == 2.0
        assert loc.ransac.max_iterations == 2000
        assert loc.gating.min_inliers == 8 and loc.gating.max_log10_nfa == -6.0
        assert (loc.gating.scale_min, loc.gating.scale_max) == (0.05, 20.0)
        cov = loc.covariance
        assert (cov.attitude_sigma_rad, cov.min_yaw_sigma_rad) == (0.035, 0.0175)
        assert (cov.aerial_sigma_px, cov.map_georef_sigma_m) == (0.3, 1.0)
        assert (classical.max_ground_features, classical.max_features) == (2000, 4000)
        assert (classical.ratio, classical.ground_max_side_px, classical.mutual) == (
            0.8,
            320,
            True,
        )
        assert loc.lifting.max_depth_m == 2000.0 and loc.height.surface_relief_m == 10.0
    if path.name == "vehicle_forward.yaml":
        assert configs.matcher.kind == "learned" and configs.node.camera_mount == "forward"
        assert configs.depth.kind in ("ground_plane", "model")


def _table_problems(specs: Any) -> list[str]:
    """What is missing from declared parameters: a description, a numeric range, a valid
    default, a documented NaN default, a well-formed name."""
    from cvgl_ros.ros.errors import ParameterError
    from cvgl_ros.ros.params import check_value

    problems = []
    for spec in specs:
        name = spec.name
        if not spec.description.strip():
            problems.append(f"{name} has no description")
        if not re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*", name):
            problems.append(f"{name} is not a dotted snake_case name")
        numeric = spec.kind in ("int", "float", "int_array", "float_array")
        if numeric and (spec.min_value is None or spec.max_value is None):
            problems.append(f"{name} has no range")
        if spec.kind == "str" and spec.default == "" and name == "tiles.source":
            continue  # required: no default to check
        try:
            check_value(spec, spec.default)
        except ParameterError as exc:
            problems.append(f"{name}: default {spec.default!r} is invalid: {exc}")
        nan_default = isinstance(spec.default, float) and math.isnan(spec.default)
        if nan_default and "NaN" not in spec.description:
            problems.append(f"{name}: NaN default must be documented")
    return problems


def test_every_declared_parameter_has_a_range_and_a_description() -> None:
    from cvgl_ros.ros.params import PARAMETERS, ParamSpec

    assert _table_problems(PARAMETERS.values()) == []
    # The check catches what it must: a numeric parameter without a range, an empty text.
    bad = [
        ParamSpec("gating.gain", "float", 1.0, "a gain"),
        ParamSpec("gating.label", "str", "x", ""),
    ]
    assert _table_problems(bad) == ["gating.gain has no range", "gating.label has no description"]


def _launch_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and (getattr(n.func, "id", None) or getattr(n.func, "attr", None)) == "Node"
    ]


def _kw(call: ast.Call, name: str) -> Any:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_parses_and_defines_generate(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_an_existing_executable_and_config(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    calls = _launch_calls(tree)
    assert calls, f"{path.name} starts no Node"
    scripts = _console_scripts()
    for call in calls:
        package, executable = _kw(call, "package"), _kw(call, "executable")
        assert isinstance(package, ast.Constant) and isinstance(executable, ast.Constant)
        if package.value in OTHER_EXECUTABLES:
            assert executable.value in OTHER_EXECUTABLES[package.value], executable.value
            continue
        assert package.value == "cvgl_ros"
        assert executable.value in scripts, (
            f"{path.name}: executable {getattr(executable, 'value', executable)!r} is not a "
            f"console script of setup.py ({sorted(scripts)})"
        )
        module, _, func = scripts[executable.value].partition(":")
        module_path = ROOT / (module.replace(".", "/") + ".py")
        assert module_path.is_file(), f"{module} does not exist"
        assert f"def {func}(" in module_path.read_text(), f"{module} has no {func}()"
    # Every config/<name>.yaml the launch file mentions exists.
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    yaml_names = [s for s in strings if isinstance(s, str) and s.endswith(".yaml")]
    assert yaml_names, f"{path.name} names no parameter file"
    for name in yaml_names:
        assert (ROOT / "config" / Path(name).name).is_file(), f"{path.name}: {name} missing"
    for name in (s for s in strings if isinstance(s, str) and s.endswith(".launch.py")):
        assert (ROOT / "launch" / Path(name).name).is_file(), f"{path.name}: {name} missing"
    remaps = {
        n.elts[0].value
        for call in calls
        if getattr(_kw(call, "package"), "value", None) == "cvgl_ros"
        for n in ast.walk(call)
        if isinstance(n, ast.Tuple) and len(n.elts) == 2 and isinstance(n.elts[0], ast.Constant)
    }
    from cvgl_ros.ros.constants import INPUT_TOPICS

    # Remaps must target the node's fixed input names, or they remap nothing.
    assert {r for r in remaps if isinstance(r, str) and "/" in r} <= set(INPUT_TOPICS)
