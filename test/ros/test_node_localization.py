"""The real node on loopback DDS: a rendered view of a real orthophoto in, a pose out.

The node localizes against the SpaceNet Atlanta GeoTIFF (real GeoTIFF patch source, classical
SIFT matcher, constant-range depth); the test publishes CameraInfo, images rendered at a known
pose and NavSatFix messages, and checks ``~/pose``, ``~/fix`` and ``/diagnostics``.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from cvgl_node_scene import (  # noqa: E402
    Harness,
    Scene,
    camera_info_msg,
    fix_msg,
    image_msg,
    make_scene,
)
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import (  # noqa: E402
    CompressedImage,
    Image,
    NavSatFix,
    NavSatStatus,
)

from cvgl_ros.ros import convert  # noqa: E402
from cvgl_ros.ros.node import CvglNode, StartupError  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.data]

T0_S = 1_700_000_000.0
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def scene(request: pytest.FixtureRequest) -> Scene:
    shared_data: Path = request.getfixturevalue("shared_data")
    return make_scene(shared_data)


@pytest.fixture
def make_harness(ros_context: Any) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(params: dict[str, Any]) -> Harness:
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        node = CvglNode(context=ros_context, parameter_overrides=overrides)
        harness = Harness(ros_context, node)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def _values(status: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_node_publishes_pose_and_fix_of_a_rendered_view(
    make_harness: Callable[..., Harness], scene: Scene
) -> None:
    h = make_harness(scene.node_params())
    # The prior is off by 7 m and 6 m: the pose must come from the image, not the fix.
    prior_lat, prior_lon = scene.latlon_at(scene.true_en_m[0] + 7.0, scene.true_en_m[1] - 6.0)
    sent_stamps: list[float] = []

    def publish() -> None:
        stamp = T0_S + 0.25 * len(sent_stamps)
        h.info_pub.publish(camera_info_msg(scene, stamp))
        h.fix_pub.publish(fix_msg(prior_lat, prior_lon, stamp - 0.05, sigma_m=5.0))
        # bgr8 on purpose: the node must swap channels back before matching.
        h.image_pub.publish(image_msg(scene.image, stamp, encoding="bgr8"))
        sent_stamps.append(stamp)

    assert h.spin_until(lambda: bool(h.poses) and bool(h.fixes), timeout_s=90.0, every=publish)
    pose = h.poses[0]
    assert pose.header.frame_id == "map"
    sent_exact = {convert.s_to_sec_nanosec(s) for s in sent_stamps}
    assert (pose.header.stamp.sec, pose.header.stamp.nanosec) in sent_exact, "not an image stamp"
    p = pose.pose.pose
    assert p.position.x == pytest.approx(scene.true_en_m[0], abs=1.5)
    assert p.position.y == pytest.approx(scene.true_en_m[1], abs=1.5)
    assert p.position.z == 0.0
    yaw = 2.0 * math.atan2(p.orientation.z, p.orientation.w)
    assert math.remainder(yaw - scene.true_yaw_rad, 2 * math.pi) == pytest.approx(0.0, abs=0.03)
    assert (p.orientation.x, p.orientation.y) == (0.0, 0.0)
    cov = np.asarray(pose.pose.covariance).reshape(6, 6)
    np.testing.assert_allclose(cov, cov.T)
    assert np.all(np.linalg.eigvalsh(cov) > 0.0), "covariance not positive definite"
    assert np.all(np.diag(cov) > 0.0)
    assert cov[2, 2] >= 1e3 and cov[3, 3] >= 1e3 and cov[4, 4] >= 1e3  # unobserved axes
    assert cov[0, 0] < 25.0 and cov[5, 5] < 0.1  # tighter than the prior: a real fix

    fix = h.fixes[0]
    assert fix.header.frame_id == "base_link"  # the base's position (zero lever arm here)
    # The prior's ellipsoidal altitude and its variance (4 sigma^2), never NaN.
    assert fix.altitude == 250.0
    assert fix.status.status == NavSatStatus.STATUS_FIX
    assert fix.status.service == NavSatStatus.SERVICE_GPS
    assert (fix.header.stamp.sec, fix.header.stamp.nanosec) == (
        pose.header.stamp.sec,
        pose.header.stamp.nanosec,
    )
    assert fix.position_covariance_type == NavSatFix.COVARIANCE_TYPE_KNOWN
    east, north = scene.origin.to_en(fix.latitude, fix.longitude)
    assert float(east) == pytest.approx(scene.true_en_m[0], abs=1.5)
    assert float(north) == pytest.approx(scene.true_en_m[1], abs=1.5)
    fcov = np.asarray(fix.position_covariance).reshape(3, 3)
    np.testing.assert_allclose(fcov[:2, :2], cov[:2, :2])
    # The prior's altitude variance (2 x 5 m)^2 at the image stamp: the fix 0.05 s before the
    # first image as it is, or, when an earlier image was dropped while the node was busy,
    # extrapolated from the last two fixes 0.25 s apart (a = 0.2: (1 + a)^2 C1 + a^2 C0).
    assert fcov[2, 2] == pytest.approx(100.0) or fcov[2, 2] == pytest.approx(148.0, rel=1e-4)
    assert np.all(np.linalg.eigvalsh(fcov) > 0.0)


def test_diagnostics_report_rates_latency_inliers_and_tiles(
    make_harness: Callable[..., Harness], scene: Scene
) -> None:
    h = make_harness(scene.node_params(publish_overlay=True))
    overlays: list[Image] = []
    h.io.create_subscription(Image, "/cvgl_node/debug/overlay", overlays.append, QOS)
    sent = [0]

    def publish() -> None:
        stamp = T0_S + 0.25 * sent[0]
        sent[0] += 1
        h.info_pub.publish(camera_info_msg(scene, stamp))
        h.fix_pub.publish(fix_msg(scene.true_lat_deg, scene.true_lon_deg, stamp, sigma_m=5.0))
        # A burst: images arriving while the worker is busy are dropped, never queued.
        for k in range(4):
            h.image_pub.publish(image_msg(scene.image, stamp + 0.01 * k))

    def ok_with_tiles() -> bool:
        status = h.localization_status("last_status", "ok")
        values = _values(status) if status is not None else {}
        return (
            int(values.get("poses_published", "0")) >= 2
            and int(values.get("images_dropped", "0")) >= 1
        )

    assert h.spin_until(ok_with_tiles, timeout_s=90.0, every=publish)
    status = h.localization_status("last_status", "ok")
    values = _values(status)
    assert status.level == b"\x00", status.message
    assert int(values["images_in"]) >= 2
    assert int(values["images_dropped"]) >= 1
    assert float(values["latency_total_ms"]) > 0.0
    assert float(values["latency_match_ms"]) > 0.0
    assert float(values["inliers_mean"]) >= 12
    assert 0.15 <= float(values["inlier_ratio_mean"]) <= 1.0
    # The node warms the RANSAC kernel up at start-up when numba is installed (the old-stack
    # job runs without it: numpy, saying why).
    if importlib.util.find_spec("numba") is not None:
        assert values["ransac_implementation"] in ("numba", "numpy (numba kernel compiling)")
    else:
        assert values["ransac_implementation"].startswith("numpy (numba is not installed")
    assert values["map_origin"].startswith(f"{scene.origin.origin_lat_deg:.7f}")
    names = {s.name for array in h.diags for s in array.status}
    assert {"/cvgl_node: gnss", "/cvgl_node: tiles"} <= names
    tiles = next(
        s for array in reversed(h.diags) for s in array.status if s.name.endswith(": tiles")
    )
    assert int(_values(tiles)["tiles.patches"]) >= 1

    def rates() -> list[float]:
        return [
            float(_values(s)["image_rate_hz"])
            for array in h.diags
            for s in array.status
            if s.name.endswith(": localization") and _values(s)["image_rate_hz"] != "nan"
        ]

    # A fast worker can publish two poses from the first burst, before any diagnostics period
    # has seen images arrive: keep images coming until a rate sample covers some.
    assert h.spin_until(lambda: any(r > 0.0 for r in rates()), timeout_s=30.0, every=publish)
    assert h.spin_until(lambda: bool(overlays), timeout_s=60.0)
    overlay = overlays[0]
    assert overlay.encoding == "rgb8" and overlay.header.frame_id == "map"
    assert overlay.width > 100 and overlay.height > 100
    assert len(overlay.data) == overlay.step * overlay.height


def test_compressed_transport(make_harness: Callable[..., Harness], scene: Scene) -> None:
    h = make_harness(scene.node_params(image_transport="compressed"))
    jpeg_pub = h.io.create_publisher(CompressedImage, "/camera/image_raw/compressed", QOS)
    ok, jpeg = cv2.imencode(".jpg", scene.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    sent = [0]

    def publish() -> None:
        stamp = T0_S + 0.25 * sent[0]
        sent[0] += 1
        h.info_pub.publish(camera_info_msg(scene, stamp))
        h.fix_pub.publish(fix_msg(scene.true_lat_deg, scene.true_lon_deg, stamp))
        msg = CompressedImage()
        msg.header.stamp.sec, msg.header.stamp.nanosec = convert.s_to_sec_nanosec(stamp)
        msg.format = "jpeg"
        msg.data = jpeg.tobytes()
        if jpeg_pub.get_subscription_count() > 0:
            jpeg_pub.publish(msg)

    h.image_pub = jpeg_pub  # connected() waits for the compressed subscription
    assert h.spin_until(lambda: bool(h.poses), timeout_s=90.0, every=publish)
    p = h.poses[0].pose.pose.position
    assert p.x == pytest.approx(scene.true_en_m[0], abs=1.5)
    assert p.y == pytest.approx(scene.true_en_m[1], abs=1.5)


def _expect_failure(
    h: Harness,
    scene: Scene,
    expected_status: str,
    publish_fix: Callable[[float], None] | None,
    image: Callable[[float], Any] | None = None,
) -> dict[str, str]:
    sent = [0]

    def publish() -> None:
        stamp = T0_S + 0.25 * sent[0]
        sent[0] += 1
        h.info_pub.publish(camera_info_msg(scene, stamp))
        if publish_fix is not None:
            publish_fix(stamp)
        h.image_pub.publish(image(stamp) if image else image_msg(scene.image, stamp))

    found = h.spin_until(
        lambda: h.localization_status("last_failure_status", expected_status) is not None,
        timeout_s=90.0,
        every=publish,
    )
    assert found, f"no diagnostics with last_failure_status {expected_status}"
    status = h.localization_status("last_failure_status", expected_status)
    assert status.level == b"\x02", f"expected ERROR, got {status.level!r}: {status.message}"
    assert expected_status in status.message
    assert not h.poses and not h.fixes, "a pose was published despite the failure"
    return _values(status)


def test_no_fix_gives_no_pose_and_an_error(
    make_harness: Callable[..., Harness], scene: Scene
) -> None:
    h = make_harness(scene.node_params())
    values = _expect_failure(h, scene, "no_fix", publish_fix=None)
    assert "no GNSS fix" in values["last_failure"]


def test_stale_fix_gives_no_pose(make_harness: Callable[..., Harness], scene: Scene) -> None:
    h = make_harness(scene.node_params(max_fix_age_s=1.0))

    def stale(stamp: float) -> None:
        h.fix_pub.publish(fix_msg(scene.true_lat_deg, scene.true_lon_deg, stamp - 30.0))

    values = _expect_failure(h, scene, "stale_fix", publish_fix=stale)
    assert "max_fix_age_s" in values["last_failure"]


def test_nan_fix_is_rejected_and_counted(
    make_harness: Callable[..., Harness], scene: Scene
) -> None:
    h = make_harness(scene.node_params())

    def nan_fix(stamp: float) -> None:
        h.fix_pub.publish(fix_msg(math.nan, scene.true_lon_deg, stamp))
        h.fix_pub.publish(fix_msg(scene.true_lat_deg, scene.true_lon_deg, stamp, status=-1))

    values = _expect_failure(h, scene, "no_fix", publish_fix=nan_fix)
    assert int(values["skipped.fix:nan_fix"]) >= 1
    assert int(values["skipped.fix:no_fix"]) >= 1


def test_corrupt_images_are_skipped_and_counted(
    make_harness: Callable[..., Harness], scene: Scene
) -> None:
    h = make_harness(scene.node_params())

    def fix(stamp: float) -> None:
        h.fix_pub.publish(fix_msg(scene.true_lat_deg, scene.true_lon_deg, stamp))

    count = [0]

    def corrupt(stamp: float) -> Any:
        msg = image_msg(scene.image, stamp)
        count[0] += 1
        if count[0] % 2:
            msg.encoding = "32FC7"  # not an image encoding the node knows
        else:
            msg.data = bytes(msg.data)[: len(msg.data) // 2]  # truncated
        return msg

    values = _expect_failure(h, scene, "bad_image", publish_fix=fix, image=corrupt)

    def both_counted() -> bool:
        status = h.localization_status("last_failure_status", "bad_image")
        keys = _values(status) if status is not None else {}
        return "skipped.image:truncated" in keys and "skipped.image:unsupported_encoding" in keys

    assert h.spin_until(
        both_counted, timeout_s=60.0, every=lambda: h.image_pub.publish(corrupt(T0_S + 1.0))
    )
    values = _values(h.localization_status("last_failure_status", "bad_image"))
    assert int(values["skipped.image:truncated"]) >= 1
    assert int(values["skipped.image:unsupported_encoding"]) >= 1
    assert values["last_failure_status"] == "bad_image"


def test_missing_tiles_give_no_pose_and_a_tiles_error(
    make_harness: Callable[..., Harness], scene: Scene
) -> None:
    h = make_harness(scene.node_params())
    far_lat, far_lon = scene.latlon_at(5000.0, 5000.0)  # the orthophoto covers 450 m

    def far_fix(stamp: float) -> None:
        h.fix_pub.publish(fix_msg(far_lat, far_lon, stamp))

    values = _expect_failure(h, scene, "no_imagery", publish_fix=far_fix)
    assert "imagery" in values["last_failure"]
    tiles = next(
        s for array in reversed(h.diags) for s in array.status if s.name.endswith(": tiles")
    )
    assert tiles.level == b"\x02"
    assert int(_values(tiles)["tiles.no_imagery"]) >= 1


def test_invalid_and_undeclared_parameters_fail_startup(ros_context: Any, scene: Scene) -> None:
    cases = {
        "gating.min_inlier_ratio": 2.0,  # out of range
        "gating.min_inlier": 5,  # undeclared (typo)
        "max_fix_age_s": "soon",  # wrong type
        "matcher.classical.feature": "surf",  # not a choice
        "depth.range_m": -3.0,  # rejected by the config class
        "ransac.preset": "quick",  # not a preset
        "matcher.learned.checkpoint_path": "/m",  # a kind that is not selected
        "ransac.seed": 3,  # an internal, not a parameter
    }
    for name, value in cases.items():
        params = scene.node_params(**{name: value})
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        with pytest.raises(StartupError) as info:
            CvglNode(context=ros_context, parameter_overrides=overrides)
        assert name in str(info.value), str(info.value)
        if name == "matcher.learned.checkpoint_path":
            assert "only used with matcher.kind: learned" in str(info.value)
        if name == "ransac.preset":
            assert "'default', 'fast', 'thorough'" in str(info.value)
    with pytest.raises(StartupError, match=r"tiles\.source"):
        CvglNode(context=ros_context)
    # Components that cannot start are reported at start-up, with what is missing.
    broken = {
        "tiles.source": "/nonexistent/ortho.tif",
        "matcher.kind": "learned",
    }
    for name, value in broken.items():
        params = scene.node_params(**{name: value})
        if name == "matcher.kind":
            params["matcher.learned.checkpoint_path"] = "/nonexistent/matcher"
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        with pytest.raises(StartupError, match="/nonexistent/"):
            CvglNode(context=ros_context, parameter_overrides=overrides)


def test_topics_types_and_remapping(ros_context: Any, scene: Scene) -> None:
    """The node's interface: what it subscribes and publishes, with namespace and remaps."""
    params = scene.node_params(use_imu=True)
    node = CvglNode(
        context=ros_context,
        namespace="/drone",
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        cli_args=["--ros-args", "-r", "camera/image_raw:=/cam/image"],
    )
    try:
        subs = dict(node.get_subscriber_names_and_types_by_node("cvgl_node", "/drone"))
        pubs = dict(node.get_publisher_names_and_types_by_node("cvgl_node", "/drone"))
        assert subs["/cam/image"] == ["sensor_msgs/msg/Image"]
        assert subs["/drone/camera/camera_info"] == ["sensor_msgs/msg/CameraInfo"]
        assert subs["/drone/gnss/fix"] == ["sensor_msgs/msg/NavSatFix"]
        assert subs["/drone/imu/data"] == ["sensor_msgs/msg/Imu"]
        assert pubs["/drone/cvgl_node/pose"] == ["geometry_msgs/msg/PoseWithCovarianceStamped"]
        assert pubs["/drone/cvgl_node/fix"] == ["sensor_msgs/msg/NavSatFix"]
        assert pubs["/diagnostics"] == ["diagnostic_msgs/msg/DiagnosticArray"]
        assert pubs["/drone/cvgl_node/debug/overlay"] == ["sensor_msgs/msg/Image"]
        described = node.describe_parameter("gating.min_inlier_ratio")
        assert described.description and described.floating_point_range
        assert described.floating_point_range[0].to_value == 1.0
        assert "start-up" in node.describe_parameter("matcher.kind").description
        assert (
            "sift" in node.describe_parameter("matcher.classical.feature").additional_constraints
        )
        # Only the selected kinds' parameters exist, and they say which kind declares them.
        assert "depth.kind: constant_range" in node.describe_parameter("depth.range_m").description
        assert node.has_parameter("matcher.classical.preset")
        for absent in ("matcher.learned.checkpoint_path", "depth.camera_height_m", "gpsd_port"):
            assert not node.has_parameter(absent), absent
        assert not node.has_parameter("image_topic") and not node.has_parameter("ransac.seed")
    finally:
        node.destroy_node()


def test_runtime_parameter_changes_are_validated(ros_context: Any, scene: Scene) -> None:
    overrides = [Parameter(k, value=v) for k, v in scene.node_params().items()]
    node = CvglNode(context=ros_context, parameter_overrides=overrides)
    try:
        ok = node.set_parameters([Parameter("gating.min_inliers", value=30)])
        assert ok[0].successful, ok[0].reason
        assert node._pipeline.localizer.config.gating.min_inliers == 30
        ok = node.set_parameters([Parameter("max_fix_age_s", value=0.5)])
        assert ok[0].successful and node._pipeline.configs.node.max_fix_age_s == 0.5
        ok = node.set_parameters([Parameter("gating.scale_max", value=10.0)])
        assert ok[0].successful, ok[0].reason
        bad = node.set_parameters([Parameter("gating.scale_min", value=50.0)])  # > scale_max
        assert not bad[0].successful and "gating.scale_min" in bad[0].reason
        restart = node.set_parameters([Parameter("matcher.kind", value="learned")])
        assert not restart[0].successful and "start-up" in restart[0].reason
        ranged = node.set_parameters([Parameter("gating.min_inlier_ratio", value=3.0)])
        assert not ranged[0].successful
        assert node._pipeline.localizer.config.gating.min_inliers == 30  # unchanged by failures
        with pytest.raises(rclpy.exceptions.ParameterNotDeclaredException):
            node.set_parameters([Parameter("gating.min_inlier", value=3)])
    finally:
        node.destroy_node()
