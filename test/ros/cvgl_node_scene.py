"""A synthetic nadir scene over an orthophoto, shared by the node tests (not a test module).

The world is the SpaceNet Atlanta orthophoto (:func:`make_scene`, needs ``../shared/data``) or
the procedural SYNTHETIC orthophoto written as a GeoTIFF (:func:`make_synthetic_scene`, needs
nothing), read through the real GeoTIFF patch source; the camera view is rendered from it by the
real renderer at a known pose, so every expected value of the node's output is known exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cvgl_ros.core.camera import PinholeCamera
from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.ros.convert import s_to_sec_nanosec
from cvgl_ros.sim.render import render_nadir_view
from cvgl_ros.tiles import GeoTiffPatchSource

if TYPE_CHECKING:
    from cvgl_ros.ros.node import CvglNode

ORTHO_RELPATH = Path("spacenet_solaris_samples") / "sample_geotiff.tif"
WIDTH_PX, HEIGHT_PX, FOCAL_PX = 320, 240, 280.0
ALTITUDE_M = 100.0


@dataclass(frozen=True)
class Scene:
    """A rendered nadir view with its ground truth.

    Attributes:
        ortho_path: the GeoTIFF.
        origin: map origin (the orthophoto centre).
        camera: the pinhole camera.
        image: (H, W, 3) uint8 RGB rendered view.
        true_en_m: (2,) camera (east, north) in the map frame, metres.
        true_yaw_rad: ENU yaw of the image top.
        true_lat_deg, true_lon_deg: camera position, degrees.
    """

    ortho_path: Path
    origin: LocalEnu
    camera: PinholeCamera
    image: np.ndarray
    true_en_m: np.ndarray
    true_yaw_rad: float
    true_lat_deg: float
    true_lon_deg: float

    def latlon_at(self, east_m: float, north_m: float) -> tuple[float, float]:
        """WGS84 of a map-frame point."""
        lat, lon = self.origin.to_wgs84(east_m, north_m)
        return float(lat), float(lon)

    def node_params(self, **extra: Any) -> dict[str, Any]:
        """Parameter values for a node localizing in this scene."""
        params: dict[str, Any] = {
            "tiles.source": str(self.ortho_path),
            "patch.patch_size_px": 384,
            "patch.patch_m_per_px": 0.5,
            "depth.kind": "constant_range",
            "depth.range_m": ALTITUDE_M,
            "camera_mount": "nadir",
            "map_origin_lat_deg": self.origin.origin_lat_deg,
            "map_origin_lon_deg": self.origin.origin_lon_deg,
            "diagnostics_rate_hz": 5.0,
        }
        params.update(extra)
        return params


def make_scene(
    shared_data: Path, east_m: float = 14.0, north_m: float = -9.0, yaw_rad: float = 0.6
) -> Scene:
    """Render the view of a nadir camera at (east_m, north_m) from the orthophoto centre."""
    path = shared_data / ORTHO_RELPATH
    with GeoTiffPatchSource(path, 900, 0.5) as source:
        west, south, east, north = source.bounds_lonlat
        lat0, lon0 = 0.5 * (south + north), 0.5 * (west + east)
        world = source.patch_at(lat0, lon0)
    origin = LocalEnu(lat0, lon0)
    camera = PinholeCamera(
        WIDTH_PX, HEIGHT_PX, FOCAL_PX, FOCAL_PX, (WIDTH_PX - 1) / 2, (HEIGHT_PX - 1) / 2
    )
    true_en = np.array([east_m, north_m])
    image = render_nadir_view(world, camera, true_en, ALTITUDE_M, yaw_rad)
    lat, lon = origin.to_wgs84(east_m, north_m)
    return Scene(path, origin, camera, image, true_en, yaw_rad, float(lat), float(lon))


def make_synthetic_scene(
    directory: Path, east_m: float = 14.0, north_m: float = -9.0, yaw_rad: float = 0.6
) -> Scene:
    """:func:`make_scene` over the procedural orthophoto, written to ``directory/map.tif``."""
    from cvgl_ros.sim.synthetic_map import SyntheticMapConfig, synthetic_world, write_geotiff

    world = synthetic_world(SyntheticMapConfig(size_px=900, m_per_px=0.5, seed=11))
    path = write_geotiff(Path(directory) / "map.tif", world)
    origin = LocalEnu(world.center_lat_deg, world.center_lon_deg)
    camera = PinholeCamera(
        WIDTH_PX, HEIGHT_PX, FOCAL_PX, FOCAL_PX, (WIDTH_PX - 1) / 2, (HEIGHT_PX - 1) / 2
    )
    true_en = np.array([east_m, north_m])
    image = render_nadir_view(world, camera, true_en, ALTITUDE_M, yaw_rad)
    lat, lon = origin.to_wgs84(east_m, north_m)
    return Scene(path, origin, camera, image, true_en, yaw_rad, float(lat), float(lon))


def set_stamp(header: Any, stamp_s: float, frame_id: str) -> None:
    """Fill a header."""
    header.stamp.sec, header.stamp.nanosec = s_to_sec_nanosec(stamp_s)
    header.frame_id = frame_id


def camera_info_msg(scene: Scene, stamp_s: float) -> Any:
    """sensor_msgs/CameraInfo of the scene camera."""
    from sensor_msgs.msg import CameraInfo

    cam = scene.camera
    msg = CameraInfo()
    set_stamp(msg.header, stamp_s, "camera_optical")
    msg.width, msg.height = cam.width_px, cam.height_px
    msg.k = [cam.fx_px, 0.0, cam.cx_px, 0.0, cam.fy_px, cam.cy_px, 0.0, 0.0, 1.0]
    msg.d = [0.0] * 5
    msg.distortion_model = "plumb_bob"
    msg.p = [cam.fx_px, 0.0, cam.cx_px, 0.0, 0.0, cam.fy_px, cam.cy_px, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def image_msg(image: np.ndarray, stamp_s: float, encoding: str = "rgb8") -> Any:
    """sensor_msgs/Image of an RGB array (``bgr8`` swaps the channels)."""
    from sensor_msgs.msg import Image

    pixels = image[:, :, ::-1] if encoding == "bgr8" else image
    msg = Image()
    set_stamp(msg.header, stamp_s, "camera_optical")
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.step = int(image.shape[1] * 3)
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


def fix_msg(
    lat_deg: float, lon_deg: float, stamp_s: float, sigma_m: float = 5.0, status: int = 0
) -> Any:
    """sensor_msgs/NavSatFix with a diagonal covariance."""
    from sensor_msgs.msg import NavSatFix

    msg = NavSatFix()
    set_stamp(msg.header, stamp_s, "gnss")
    msg.status.status = status
    msg.latitude, msg.longitude, msg.altitude = lat_deg, lon_deg, 250.0
    msg.position_covariance = [
        sigma_m**2,
        0.0,
        0.0,
        0.0,
        sigma_m**2,
        0.0,
        0.0,
        0.0,
        4 * sigma_m**2,
    ]
    msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
    return msg


class Harness:
    """The node under test plus a test node publishing inputs and recording outputs."""

    def __init__(self, context: Any, node: CvglNode) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, NavSatFix

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node = node
        self.io = rclpy.create_node("cvgl_test_io", context=context)
        self.image_pub = self.io.create_publisher(Image, "/camera/image_raw", qos)
        self.info_pub = self.io.create_publisher(CameraInfo, "/camera/camera_info", qos)
        self.fix_pub = self.io.create_publisher(NavSatFix, "/gnss/fix", qos)
        self.poses: list[PoseWithCovarianceStamped] = []
        self.fixes: list[NavSatFix] = []
        self.diags: list[DiagnosticArray] = []
        self.io.create_subscription(
            PoseWithCovarianceStamped, "/cvgl_node/pose", self.poses.append, qos
        )
        self.io.create_subscription(NavSatFix, "/cvgl_node/fix", self.fixes.append, qos)
        self.io.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, qos)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(node)
        self.executor.add_node(self.io)

    def connected(self) -> bool:
        return all(
            p.get_subscription_count() > 0 for p in (self.image_pub, self.info_pub, self.fix_pub)
        )

    def spin_until(
        self,
        done: Callable[[], bool],
        timeout_s: float = 30.0,
        every: Callable[[], None] | None = None,
        period_s: float = 0.4,
    ) -> bool:
        """Spin both nodes until ``done()``; call ``every()`` each ``period_s``."""
        deadline = time.monotonic() + timeout_s
        next_call = 0.0
        while time.monotonic() < deadline:
            if done():
                return True
            if every is not None and time.monotonic() >= next_call and self.connected():
                every()
                next_call = time.monotonic() + period_s
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def localization_status(self, key: str, value: str) -> Any:
        """The latest localization DiagnosticStatus whose ``key`` equals ``value``, or None."""
        for array in reversed(self.diags):
            for status in array.status:
                if status.name.endswith(": localization"):
                    values = {kv.key: kv.value for kv in status.values}
                    if values.get(key) == value:
                        return status
        return None

    def close(self) -> None:
        self.executor.shutdown()
        self.io.destroy_node()
        self.node.destroy_node()
