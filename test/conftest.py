"""Test-wide set-up: DDS confined to loopback, a private ROS domain, shared data location.

The environment is fixed at import time, before any test can initialise rclpy, so every node
a test starts discovers peers on this machine only and in a domain no other run uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests on a fixed, reproducible set of examples (a failure there names
# a case anyone can replay); local runs keep exploring new random examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
# A domain id unique to this run (valid ids on Linux: 0-101 without port clashes).
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CVGL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set CVGL_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def ros_context() -> Iterator[object]:
    """A fresh rclpy context, shut down after the test."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.context.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


def _identity_onnx(path: Path, shape: tuple[int | str, ...], output: str) -> Path:
    """A one-node ONNX file: ``images`` of ``shape`` -> ``output`` (a str dim is dynamic)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], [output])],
        "identity",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, list(shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def identity_onnx() -> Callable[[Path, tuple[int | str, ...], str], Path]:
    """Writes a one-node ONNX file with a given input shape: for start-up checks of backends
    (sizes, paths) without exporting a network."""
    return _identity_onnx
