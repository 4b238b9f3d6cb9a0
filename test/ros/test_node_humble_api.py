"""The node on an rclpy without the Iron+ parameter API (ROS 2 Humble's rclpy 3.3).

The ROS 2 wheels here are Kilted's; Humble's ``rclpy.node.Node`` is simulated by removing what
Iron added to it: ``add_pre_set_parameters_callback`` / ``add_post_set_parameters_callback``
and their ``remove_*`` counterparts (the only post-Humble rclpy APIs the node, the pipeline and
the tools use; see README "Supported stacks"). The node must start, and a parameter changed at
run time (directly, atomically, or through the parameter service that ``ros2 param set`` calls)
must still reach the localizer, and a rejected change must not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

rclpy = pytest.importorskip("rclpy")
from cvgl_node_scene import (  # noqa: E402
    Scene,
    camera_info_msg,
    fix_msg,
    image_msg,
    make_synthetic_scene,
)
from rcl_interfaces.srv import SetParameters, SetParametersAtomically  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from cvgl_ros.core.types import PoseStatus  # noqa: E402
from cvgl_ros.ros.node import CvglNode  # noqa: E402

pytestmark = pytest.mark.ros

IRON_ONLY_NODE_API = (
    "add_pre_set_parameters_callback",
    "add_post_set_parameters_callback",
    "remove_pre_set_parameters_callback",
    "remove_post_set_parameters_callback",
)
T0_S = 1_700_000_000.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return make_synthetic_scene(tmp_path_factory.mktemp("humble_scene"))


@pytest.fixture
def humble_node_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``rclpy.node.Node`` as Humble has it: no pre/post-set parameter callbacks."""
    for name in IRON_ONLY_NODE_API:
        monkeypatch.delattr(Node, name, raising=False)
    assert not hasattr(Node, "add_post_set_parameters_callback")
    yield


def _frame(node: CvglNode, scene: Scene, stamp_s: float, fix_age_s: float = 0.0) -> Any:
    """One frame through the node's pipeline (CameraInfo, a fix ``fix_age_s`` old, image)."""
    pipeline = node.pipeline
    pipeline.on_camera_info(camera_info_msg(scene, stamp_s))
    pipeline.on_fix(fix_msg(scene.true_lat_deg, scene.true_lon_deg, stamp_s - fix_age_s))
    return pipeline.process_image(image_msg(scene.image, stamp_s)).estimate


def _call(executor: Any, client: Any, request: Any, timeout_s: float = 20.0) -> Any:
    assert client.wait_for_service(timeout_sec=timeout_s), "parameter service not available"
    future = client.call_async(request)
    deadline = time.monotonic() + timeout_s
    while not future.done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    assert future.done(), "no answer from the parameter service"
    return future.result()


def test_runtime_parameters_take_effect_without_post_set_callbacks(
    humble_node_api: None, ros_context: Any, scene: Scene, tmp_path: Path
) -> None:
    params = scene.node_params(tile_cache_path=str(tmp_path / "tiles.mbtiles"))
    node = CvglNode(
        context=ros_context,
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
    )
    client_node = rclpy.create_node("humble_param_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(client_node)
    try:
        assert _frame(node, scene, T0_S).status is PoseStatus.OK

        # Node.set_parameters: applied after the set, and the next frame obeys it.
        results = node.set_parameters([Parameter("gating.min_inliers", value=100000)])
        assert results[0].successful, results[0].reason
        assert node.pipeline.localizer.config.gating.min_inliers == 100000
        refused = _frame(node, scene, T0_S + 1.0)
        assert refused.status is PoseStatus.TOO_FEW_MATCHES and "100000" in refused.reasons[0]

        # The parameter service (what `ros2 param set` calls) goes through the same path.
        set_client = client_node.create_client(SetParameters, "/cvgl_node/set_parameters")
        request = SetParameters.Request()
        request.parameters = [Parameter("gating.min_inliers", value=12).to_parameter_msg()]
        response = _call(executor, set_client, request)
        assert response.results[0].successful, response.results[0].reason
        assert node.pipeline.localizer.config.gating.min_inliers == 12
        assert _frame(node, scene, T0_S + 2.0).status is PoseStatus.OK

        atomic = client_node.create_client(
            SetParametersAtomically, "/cvgl_node/set_parameters_atomically"
        )
        request_atomic = SetParametersAtomically.Request()
        request_atomic.parameters = [
            Parameter("max_fix_age_s", value=0.5).to_parameter_msg(),
            Parameter("gating.min_inliers", value=15).to_parameter_msg(),
        ]
        response_atomic = _call(executor, atomic, request_atomic)
        assert response_atomic.result.successful, response_atomic.result.reason
        assert node.pipeline.configs.node.max_fix_age_s == 0.5
        assert node.pipeline.localizer.config.gating.min_inliers == 15
        assert _frame(node, scene, T0_S + 3.0, fix_age_s=1.0).status is PoseStatus.STALE_FIX

        # A rejected set changes nothing.
        bad = node.set_parameters_atomically(
            [
                Parameter("gating.min_inliers", value=40),
                Parameter("gating.scale_min", value=1e5),  # > scale_max: rejected
            ]
        )
        assert not bad.successful
        assert node.pipeline.localizer.config.gating.min_inliers == 15
        restart = node.set_parameters([Parameter("matcher.kind", value="learned")])
        assert not restart[0].successful and "start-up" in restart[0].reason
        assert node.pipeline.configs.matcher.kind == "classical"
    finally:
        executor.shutdown()
        client_node.destroy_node()
        node.destroy_node()


def test_node_module_imports_without_rclpy_event_handler() -> None:
    """Humble's rclpy has no ``rclpy.event_handler`` (Iron moved ``SubscriptionEventCallbacks``
    there from ``rclpy.qos_event``): the node module must import either way."""
    import subprocess
    import sys

    code = (
        "import sys, warnings\n"
        "import rclpy.executors, rclpy.node, rclpy.qos, rclpy.time  # rclpy's own imports\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore')\n"
        "    import rclpy.qos_event  # Kilted keeps it as a deprecated alias; Humble's original\n"
        "sys.modules['rclpy.event_handler'] = None  # as on Humble: the module does not exist\n"
        "import cvgl_ros.ros.node as node\n"
        "print(node.SubscriptionEventCallbacks is rclpy.qos_event.SubscriptionEventCallbacks)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
