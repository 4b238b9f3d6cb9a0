"""The robot_localization example (config/robot_localization_ekf.yaml and its launch file),
checked statically: robot_localization is not installable here.

Every key must be one robot_localization's ``ekf_node`` / ``navsat_transform_node`` declares
(ROS 2 ``ros_filter.cpp`` / ``navsat_transform.cpp``, Humble to Kilted), with the type it reads;
the sensor configs must be 15 booleans; the frames and topics must be cvgl_node's, so that the
EKF really fuses ``~/pose`` and navsat_transform really reads ``~/fix``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cvgl_ros.ros import constants as const
from cvgl_ros.ros.params import PARAMETERS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "robot_localization_ekf.yaml"
LAUNCH = ROOT / "launch" / "cvgl_robot_localization.launch.py"

# Keys ekf_node reads (RosFilter::loadParams), by type.
EKF_KEYS: dict[str, type | tuple[type, ...]] = {
    "frequency": float,
    "sensor_timeout": float,
    "two_d_mode": bool,
    "transform_time_offset": float,
    "transform_timeout": float,
    "print_diagnostics": bool,
    "debug": bool,
    "debug_out_file": str,
    "publish_tf": bool,
    "publish_acceleration": bool,
    "permit_corrected_publication": bool,
    "map_frame": str,
    "odom_frame": str,
    "base_link_frame": str,
    "base_link_frame_output": str,
    "world_frame": str,
    "smooth_lagged_data": bool,
    "history_length": float,
    "reset_on_time_jump": bool,
    "use_control": bool,
    "control_timeout": float,
    "dynamic_process_noise_covariance": bool,
    "disabled_at_startup": bool,
    "gravitational_acceleration": float,
    "process_noise_covariance": list,
    "initial_estimate_covariance": list,
    "initial_state": list,
}
# Per-sensor keys: <kind><n> (the topic) plus these suffixes, by sensor kind.
SENSOR_SUFFIXES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "odom": {
        "_config": list,
        "_differential": bool,
        "_relative": bool,
        "_queue_size": int,
        "_pose_rejection_threshold": float,
        "_twist_rejection_threshold": float,
    },
    "pose": {
        "_config": list,
        "_differential": bool,
        "_relative": bool,
        "_queue_size": int,
        "_rejection_threshold": float,
    },
    "twist": {"_config": list, "_queue_size": int, "_rejection_threshold": float},
    "imu": {
        "_config": list,
        "_differential": bool,
        "_relative": bool,
        "_queue_size": int,
        "_pose_rejection_threshold": float,
        "_twist_rejection_threshold": float,
        "_linear_acceleration_rejection_threshold": float,
        "_remove_gravitational_acceleration": bool,
    },
}
# Keys navsat_transform_node reads (NavSatTransform::NavSatTransform), by type.
NAVSAT_KEYS: dict[str, type | tuple[type, ...]] = {
    "frequency": float,
    "delay": float,
    "transform_timeout": float,
    "magnetic_declination_radians": float,
    "yaw_offset": float,
    "zero_altitude": bool,
    "publish_filtered_gps": bool,
    "use_odometry_yaw": bool,
    "wait_for_datum": bool,
    "datum": list,
    "use_local_cartesian": bool,
    "broadcast_cartesian_transform": bool,
    "broadcast_cartesian_transform_as_parent_frame": bool,
}
# Pose state order of the 15-element configs.
STATE = ("x", "y", "z", "roll", "pitch", "yaw", "vx", "vy", "vz", "vroll", "vpitch", "vyaw")


def _nodes() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(CONFIG.read_text())
    assert isinstance(data, dict)
    return {name: body["ros__parameters"] for name, body in data.items()}


def _node_output(topic: str) -> str:
    """An output topic of cvgl_node (``~/x``) resolved for the default name, no namespace."""
    return "/" + const.NODE_NAME + topic[1:] if topic.startswith("~") else topic


def _launch_nodes() -> dict[str, ast.Call]:
    tree = ast.parse(LAUNCH.read_text())
    out: dict[str, ast.Call] = {}
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        if getattr(call.func, "id", None) != "Node":
            continue
        kws = {k.arg: k.value for k in call.keywords}
        name = kws["name"]
        assert isinstance(name, ast.Constant)
        out[name.value] = call
    return out


def _remaps(call: ast.Call) -> dict[str, str]:
    kws = {k.arg: k.value for k in call.keywords}
    return {
        t.elts[0].value: t.elts[1].value
        for t in ast.walk(kws["remappings"])
        if isinstance(t, ast.Tuple) and all(isinstance(e, ast.Constant) for e in t.elts)
    }


def _check_type(node: str, key: str, value: Any, want: type | tuple[type, ...]) -> None:
    if want is float:
        ok = isinstance(value, float)  # rcl reads 1 as an integer: doubles need a decimal point
    else:
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    assert ok, f"{node}.{key}: {value!r} is not a {want}"


def _ekf_nodes() -> dict[str, dict[str, Any]]:
    return {n: p for n, p in _nodes().items() if n.startswith("ekf")}


def test_nodes_and_launch_agree() -> None:
    nodes = _nodes()
    assert set(nodes) == {"ekf_filter_node_odom", "ekf_filter_node_map", "navsat_transform"}
    launched = _launch_nodes()
    assert set(launched) == set(nodes), "every configured node is launched, and only those"
    for name, call in launched.items():
        kws = {k.arg: k.value for k in call.keywords}
        executable = kws["executable"]
        assert isinstance(executable, ast.Constant)
        expected = "navsat_transform_node" if name.startswith("navsat") else "ekf_node"
        assert executable.value == expected


@pytest.mark.parametrize("name", ["ekf_filter_node_odom", "ekf_filter_node_map"])
def test_ekf_keys_are_ones_robot_localization_reads(name: str) -> None:
    params = _nodes()[name]
    for key, value in params.items():
        m = re.fullmatch(r"(odom|pose|twist|imu)(\d+)(.*)", key)
        if m is None:
            assert key in EKF_KEYS, f"{name}: robot_localization does not read '{key}'"
            _check_type(name, key, value, EKF_KEYS[key])
            continue
        kind, _, suffix = m.groups()
        if suffix == "":
            assert isinstance(value, str) and value.startswith("/"), f"{name}.{key}: {value!r}"
            assert f"{key}_config" in params, f"{name}: {key} without {key}_config"
            continue
        assert suffix in SENSOR_SUFFIXES[kind], f"{name}: robot_localization ignores '{key}'"
        _check_type(name, key, value, SENSOR_SUFFIXES[kind][suffix])
        if suffix == "_config":
            assert len(value) == 15 and all(isinstance(v, bool) for v in value), key
    # Sensor numbering has no gaps (robot_localization stops at the first missing index).
    for kind in SENSOR_SUFFIXES:
        idx = sorted(int(k[len(kind) :]) for k in params if re.fullmatch(rf"{kind}\d+", k))
        assert idx == list(range(len(idx))), f"{name}: {kind} topics {idx} have a gap"
    assert params["two_d_mode"] is True  # cvgl_node measures x, y, yaw only
    frames = (params["map_frame"], params["odom_frame"], params["base_link_frame"])
    assert len(set(frames)) == 3
    assert params["world_frame"] in (params["map_frame"], params["odom_frame"])


def test_frames_are_cvgl_nodes() -> None:
    for name, params in _ekf_nodes().items():
        assert params["map_frame"] == PARAMETERS["map_frame"].default, name
        assert params["base_link_frame"] == PARAMETERS["base_frame"].default, name


def test_map_ekf_fuses_the_pose_as_x_y_yaw() -> None:
    ekf = _nodes()["ekf_filter_node_map"]
    assert ekf["world_frame"] == ekf["map_frame"]  # absolute poses belong to the map EKF
    poses = {k: v for k, v in ekf.items() if re.fullmatch(r"pose\d+", k)}
    assert _node_output(const.POSE_TOPIC) in poses.values(), "the map EKF does not fuse ~/pose"
    key = next(k for k, v in poses.items() if v == _node_output(const.POSE_TOPIC))
    fused = {STATE[i] for i, on in enumerate(ekf[f"{key}_config"][:12]) if on}
    assert fused == {"x", "y", "yaw"}  # z, roll, pitch are published with variance 1e6
    assert ekf.get(f"{key}_differential", False) is False  # the pose is absolute
    assert ekf.get(f"{key}_relative", False) is False
    # The odom EKF must stay continuous: no absolute pose there.
    odom = _nodes()["ekf_filter_node_odom"]
    assert odom["world_frame"] == odom["odom_frame"]
    assert not any(re.fullmatch(r"pose\d+", k) for k in odom)


def test_navsat_reads_the_fix_with_known_keys() -> None:
    navsat = _nodes()["navsat_transform"]
    for key, value in navsat.items():
        assert key in NAVSAT_KEYS, f"navsat_transform does not read '{key}'"
        _check_type("navsat_transform", key, value, NAVSAT_KEYS[key])
    if navsat.get("wait_for_datum"):
        datum = navsat["datum"]
        assert len(datum) == 3 and all(isinstance(v, float) for v in datum)
        assert -90.0 <= datum[0] <= 90.0 and -180.0 <= datum[1] <= 180.0
        assert navsat["use_local_cartesian"] is True  # ENU like cvgl_node's map frame
    remaps = _remaps(_launch_nodes()["navsat_transform"])
    assert remaps["gps/fix"] == _node_output(const.FIX_OUT_TOPIC)
    # navsat_transform's odometry input is the map EKF's output.
    map_out = _remaps(_launch_nodes()["ekf_filter_node_map"])["odometry/filtered"]
    assert remaps["odometry/filtered"] == map_out


def test_cvgl_presets_publish_what_the_ekf_expects() -> None:
    """base_link and map frames of every cvgl preset match the EKF's (defaults included)."""
    from cvgl_ros.ros.params import configs_from_params, load_params_file

    ekf = _nodes()["ekf_filter_node_map"]
    for preset in ("default.yaml", "drone_nadir.yaml", "vehicle_forward.yaml"):
        values = load_params_file(ROOT / "config" / preset)
        values["tiles.source"] = "/data/ortho.tif"
        node = configs_from_params(values).node
        assert node.base_frame == ekf["base_link_frame"], preset
        assert node.map_frame == ekf["map_frame"], preset
        assert not node.fix_frame_id or node.fix_frame_id == node.base_frame, preset
