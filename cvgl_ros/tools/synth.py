"""``cvgl-ros synth``: render a synthetic flight (or drive) with exactly known poses into a bag.

A *world* (a big north-up aerial patch built from a georeferenced orthophoto, or the procedural
synthetic map) is viewed by a camera moving along a trajectory; each frame gets photometric
changes, the GNSS prior gets a realistic receiver error, and everything is written as a ROS 2
bag (mcap by default, sqlite3 optional) with ``sensor_msgs/Image`` (or ``CompressedImage``),
``CameraInfo``, ``NavSatFix`` and optionally ``Imu``, plus ``truth.csv``
(``stamp_ns,lat_deg,lon_deg,yaw_enu_rad``) and ``synth.json`` (what was rendered, and the
node parameters that match the camera).

Camera kinds:

- ``nadir``: a down-looking drone camera (image top = body +x) at ``altitude_m``, body
  roll/pitch jitter.
- ``oblique``: a drone camera on a *forward* mount tilted down by ``tilt_down_deg``.
- ``ground``: a forward camera ``camera_height_m`` above a **flat** ground (a simplification:
  the orthophoto is painted on the ground plane; no parallax, no vertical structure).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cvgl_ros.core.camera import PinholeCamera
from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.mount import body_from_camera_for_mount
from cvgl_ros.core.types import AerialPatch, FloatArray, UInt8Array
from cvgl_ros.ros.convert import s_to_sec_nanosec
from cvgl_ros.sim.gnss import GnssNoiseConfig, GnssTrace, simulate_gnss
from cvgl_ros.sim.photometric import PhotometricConfig, apply_photometric
from cvgl_ros.sim.render import WorldRenderer, world_from_body_rotation
from cvgl_ros.sim.synthetic_map import SyntheticMapConfig, synthetic_world, write_geotiff
from cvgl_ros.sim.trajectories import TRAJECTORY_KINDS, TrajectoryConfig, make_trajectory

LOGGER = logging.getLogger(__name__)

CameraKind = Literal["nadir", "oblique", "ground"]
CAMERA_KINDS: tuple[str, ...] = ("nadir", "oblique", "ground")
STORAGE_KINDS: tuple[str, ...] = ("mcap", "sqlite3")

# Fixed epoch of synthetic bags (2023-11-14T22:13:20Z) so runs are reproducible.
EPOCH_S = 1_700_000_000.0

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_FIX_TOPIC = "/gnss/fix"
DEFAULT_IMU_TOPIC = "/imu/data"
CAMERA_FRAME = "camera_optical"
GNSS_FRAME = "gnss"
IMU_FRAME = "base_link"


@dataclass(frozen=True)
class CameraSpec:
    """Synthetic camera: intrinsics, mount and height.

    Attributes:
        kind: ``nadir``, ``oblique`` or ``ground``.
        width_px: image width, pixels.
        height_px: image height, pixels.
        hfov_deg: horizontal field of view, degrees.
        altitude_m: drone height above ground (nadir/oblique), metres.
        camera_height_m: ground camera height above the ground, metres.
        tilt_down_deg: oblique / ground mount tilt below the horizontal, degrees.
        jitter_deg: standard deviation of body roll and pitch, degrees.
    """

    kind: CameraKind = "nadir"
    width_px: int = 640
    height_px: int = 480
    hfov_deg: float = 60.0
    altitude_m: float = 80.0
    camera_height_m: float = 1.6
    tilt_down_deg: float = 45.0
    jitter_deg: float = 1.5

    def __post_init__(self) -> None:
        if self.kind not in CAMERA_KINDS:
            raise ValueError(f"kind must be one of {CAMERA_KINDS}, got {self.kind!r}")
        if self.width_px < 16 or self.height_px < 16:
            raise ValueError(
                f"width_px/height_px must be >= 16, got {self.width_px}x{self.height_px}"
            )
        if not 5.0 <= self.hfov_deg <= 150.0:
            raise ValueError(f"hfov_deg must be in [5, 150], got {self.hfov_deg}")
        for name in ("altitude_m", "camera_height_m"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0.0):
                raise ValueError(f"{name} must be positive")
        if not -10.0 <= self.tilt_down_deg <= 89.0:
            raise ValueError(f"tilt_down_deg must be in [-10, 89], got {self.tilt_down_deg}")
        if not 0.0 <= self.jitter_deg <= 20.0:
            raise ValueError(f"jitter_deg must be in [0, 20], got {self.jitter_deg}")

    def camera(self) -> PinholeCamera:
        """The pinhole model (square pixels, centred principal point, no distortion)."""
        f = 0.5 * self.width_px / math.tan(math.radians(0.5 * self.hfov_deg))
        return PinholeCamera(
            self.width_px,
            self.height_px,
            f,
            f,
            (self.width_px - 1) / 2.0,
            (self.height_px - 1) / 2.0,
        )

    @property
    def mount(self) -> Literal["nadir", "forward"]:
        """Mount name of :mod:`cvgl_ros.core.mount`."""
        return "nadir" if self.kind == "nadir" else "forward"

    @property
    def mount_pitch_rad(self) -> float:
        """Mount pitch on the body (positive tilts a forward camera down), radians."""
        return 0.0 if self.kind == "nadir" else math.radians(self.tilt_down_deg)

    @property
    def height_above_ground_m(self) -> float:
        """Camera height above the ground plane, metres."""
        return self.camera_height_m if self.kind == "ground" else self.altitude_m


@dataclass(frozen=True)
class FlightConfig:
    """Everything that defines one synthetic recording.

    Attributes:
        camera: the camera.
        trajectory: the path.
        gnss: the receiver error model.
        photometric: appearance changes per frame.
        imu: also write ``sensor_msgs/Imu`` (orientation from the true roll/pitch/yaw).
        imu_yaw_sigma_rad: noise added to the IMU yaw (and reported in its covariance), rad.
        compressed: write ``sensor_msgs/CompressedImage`` (JPEG) on ``<image_topic>/compressed``.
        storage: ``mcap`` or ``sqlite3``.
        seed: random seed of jitter and photometric draws.
    """

    camera: CameraSpec = field(default_factory=CameraSpec)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    gnss: GnssNoiseConfig = field(default_factory=GnssNoiseConfig)
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    imu: bool = True
    imu_yaw_sigma_rad: float = 0.05
    compressed: bool = False
    storage: str = "mcap"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.storage not in STORAGE_KINDS:
            raise ValueError(f"storage must be one of {STORAGE_KINDS}, got {self.storage!r}")
        if not (math.isfinite(self.imu_yaw_sigma_rad) and self.imu_yaw_sigma_rad > 0.0):
            raise ValueError(f"imu_yaw_sigma_rad must be positive, got {self.imu_yaw_sigma_rad}")


@dataclass(frozen=True)
class Frame:
    """One rendered frame with its true pose.

    Attributes:
        stamp_s: seconds since the epoch.
        image: (H, W, 3) uint8 RGB after photometric changes.
        east_m, north_m: true camera position relative to the world centre, metres.
        yaw_enu_rad: true body yaw, radians.
        roll_rad, pitch_rad: true body roll / pitch, radians.
        coverage: share of pixels that saw mapped ground.
    """

    stamp_s: float
    image: UInt8Array
    east_m: float
    north_m: float
    yaw_enu_rad: float
    roll_rad: float
    pitch_rad: float
    coverage: float


@dataclass(frozen=True)
class SynthResult:
    """Paths and statistics of a written recording."""

    bag_path: Path
    truth_csv: Path
    meta_json: Path
    num_frames: int
    mean_coverage: float
    prior_median_error_m: float


# --------------------------------------------------------------------------- worlds


def load_world(
    map_spec: str,
    world_size_px: int | None = None,
    m_per_px: float | None = None,
    synthetic: SyntheticMapConfig | None = None,
) -> AerialPatch:
    """The world the camera flies over.

    Args:
        map_spec: ``"synthetic"`` for the procedural map, or a GeoTIFF path (read through the
            tiles package's :class:`~cvgl_ros.tiles.geotiff.GeoTiffPatchSource`, i.e.
            reprojected into the local north-up ENU frame of the map centre, the same way the
            node reads it).
        world_size_px: side of the world patch, pixels (GeoTIFF only; default: the whole
            raster, at most 4096 px).
        m_per_px: world resolution, metres per pixel (GeoTIFF only; default: native).
        synthetic: configuration of the synthetic map.

    Returns:
        The world patch (centre = map centre).
    """
    if map_spec == "synthetic":
        return synthetic_world(synthetic or SyntheticMapConfig())
    from cvgl_ros.tiles.geotiff import GeoTiffPatchSource

    with GeoTiffPatchSource(map_spec) as probe:
        west, south, east, north = probe.bounds_lonlat
        native = probe.native_m_per_px
    lat, lon = 0.5 * (south + north), 0.5 * (west + east)
    res = float(m_per_px) if m_per_px else native
    if world_size_px is None:
        enu = LocalEnu(lat, lon)
        e0, n0 = enu.to_en(south, west)
        e1, n1 = enu.to_en(north, east)
        extent_m = max(abs(float(e1 - e0)), abs(float(n1 - n0)))
        world_size_px = int(min(4096, max(64, math.ceil(extent_m / res))))
    with GeoTiffPatchSource(map_spec, patch_size_px=world_size_px, patch_m_per_px=res) as source:
        patch: AerialPatch = source.patch_at(lat, lon)
    return patch


# --------------------------------------------------------------------------- rendering


def render_frames(world: AerialPatch, cfg: FlightConfig) -> Iterator[Frame]:
    """Render the frames of a flight (a generator: frames are big).

    Args:
        world: the world patch; trajectory positions are relative to its centre.
        cfg: flight configuration.

    Yields:
        Frames in time order.
    """
    rng = np.random.default_rng(cfg.seed)
    traj = make_trajectory(cfg.trajectory)
    spec = cfg.camera
    camera = spec.camera()
    renderer = WorldRenderer(world, max_range_m=250.0 if spec.kind == "ground" else 1.0e4)
    body_from_camera = body_from_camera_for_mount(spec.mount, pitch_rad=spec.mount_pitch_rad)
    jitter = math.radians(spec.jitter_deg)
    for i in range(len(traj)):
        roll = float(rng.normal(0.0, jitter)) if jitter > 0 else 0.0
        pitch = float(rng.normal(0.0, jitter)) if jitter > 0 else 0.0
        yaw = float(traj.yaw_enu_rad[i])
        rot = world_from_body_rotation(yaw, pitch, roll) @ body_from_camera
        pos = np.array([traj.east_m[i], traj.north_m[i], spec.height_above_ground_m])
        view = renderer.render(camera, pos, rot)
        image = apply_photometric(view.image, cfg.photometric, rng)
        yield Frame(
            stamp_s=EPOCH_S + float(traj.stamps_s[i]),
            image=image,
            east_m=float(traj.east_m[i]),
            north_m=float(traj.north_m[i]),
            yaw_enu_rad=yaw,
            roll_rad=roll,
            pitch_rad=pitch,
            coverage=view.coverage,
        )


# --------------------------------------------------------------------------- messages


def _quaternion_xyzw(rot: FloatArray) -> tuple[float, float, float, float]:
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(rot).as_quat()
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


class BagMessageFactory:
    """Builds rosbags message objects (sensor_msgs etc.) from plain values."""

    def __init__(self) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.typestore = get_typestore(Stores.LATEST)
        self.t = self.typestore.types

    def header(self, stamp_s: float, frame_id: str) -> Any:
        sec, nanosec = s_to_sec_nanosec(stamp_s)
        time = self.t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
        return self.t["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def image(self, rgb: UInt8Array, stamp_s: float, frame_id: str) -> Any:
        h, w = rgb.shape[:2]
        return self.t["sensor_msgs/msg/Image"](
            header=self.header(stamp_s, frame_id),
            height=h,
            width=w,
            encoding="rgb8",
            is_bigendian=0,
            step=w * 3,
            data=np.ascontiguousarray(rgb).reshape(-1),
        )

    def compressed_image(
        self, rgb: UInt8Array, stamp_s: float, frame_id: str, quality: int = 90
    ) -> Any:
        import cv2

        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return self.t["sensor_msgs/msg/CompressedImage"](
            header=self.header(stamp_s, frame_id), format="jpeg", data=buf.reshape(-1)
        )

    def camera_info(self, cam: PinholeCamera, stamp_s: float, frame_id: str) -> Any:
        k = np.array([cam.fx_px, 0.0, cam.cx_px, 0.0, cam.fy_px, cam.cy_px, 0.0, 0.0, 1.0])
        p = np.array(
            [cam.fx_px, 0.0, cam.cx_px, 0.0, 0.0, cam.fy_px, cam.cy_px, 0.0, 0.0, 0.0, 1.0, 0.0]
        )
        roi = self.t["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        )
        return self.t["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_s, frame_id),
            height=cam.height_px,
            width=cam.width_px,
            distortion_model="plumb_bob",
            d=np.zeros(5),
            k=k,
            r=np.eye(3).reshape(-1),
            p=p,
            binning_x=0,
            binning_y=0,
            roi=roi,
        )

    def navsatfix(
        self,
        lat_deg: float,
        lon_deg: float,
        sigma_m: float,
        stamp_s: float,
        has_fix: bool,
        altitude_m: float = 0.0,
    ) -> Any:
        status_cls = self.t["sensor_msgs/msg/NavSatStatus"]
        status = status_cls(status=0 if has_fix else -1, service=1)
        cov = np.diag([sigma_m**2, sigma_m**2, (2.0 * sigma_m) ** 2]).reshape(-1)
        return self.t["sensor_msgs/msg/NavSatFix"](
            header=self.header(stamp_s, GNSS_FRAME),
            status=status,
            latitude=lat_deg if has_fix else math.nan,
            longitude=lon_deg if has_fix else math.nan,
            altitude=altitude_m if has_fix else math.nan,
            position_covariance=cov,
            position_covariance_type=2,
        )

    def heading_imu(
        self, yaw_enu_rad: float, yaw_sigma_rad: float, tilt_sigma_rad: float, stamp_s: float
    ) -> Any:
        """An Imu carrying only a heading: level orientation at ``yaw_enu_rad`` (REP-145 ENU),
        roll/pitch variance ``tilt_sigma_rad²`` (not measured), yaw variance
        ``yaw_sigma_rad²``."""
        return self.imu(
            world_from_body_rotation(yaw_enu_rad, 0.0, 0.0),
            stamp_s,
            yaw_sigma_rad,
            tilt_sigma_rad=tilt_sigma_rad,
        )

    def imu(
        self,
        world_from_body: FloatArray,
        stamp_s: float,
        yaw_sigma_rad: float,
        tilt_sigma_rad: float = 0.01,
    ) -> Any:
        x, y, z, w = _quaternion_xyzw(world_from_body)
        q = self.t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)
        vec = self.t["geometry_msgs/msg/Vector3"]
        g_body = world_from_body.T @ np.array([0.0, 0.0, 9.80665])
        return self.t["sensor_msgs/msg/Imu"](
            header=self.header(stamp_s, IMU_FRAME),
            orientation=q,
            orientation_covariance=np.diag(
                [tilt_sigma_rad**2, tilt_sigma_rad**2, yaw_sigma_rad**2]
            ).reshape(-1),
            angular_velocity=vec(x=0.0, y=0.0, z=0.0),
            angular_velocity_covariance=np.diag([1e-4] * 3).reshape(-1),
            linear_acceleration=vec(x=float(g_body[0]), y=float(g_body[1]), z=float(g_body[2])),
            linear_acceleration_covariance=np.diag([1e-2] * 3).reshape(-1),
        )


def open_writer(path: Path, storage: str) -> Any:
    """A rosbags ROS 2 bag writer for ``mcap`` or ``sqlite3`` storage."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGE_KINDS:
        raise ValueError(f"storage must be one of {STORAGE_KINDS}, got {storage!r}")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    return Writer(path, version=9, storage_plugin=plugin)


# --------------------------------------------------------------------------- synthesis


def replay_params(
    cfg: FlightConfig, world: AerialPatch, map_source: str | None, truth_is_map: bool = True
) -> dict[str, Any]:
    """Node parameters (nested, as in a parameter YAML) that match this recording.

    Camera mount, IMU use, ground-plane depth at the true height, a patch that covers the
    camera footprint plus the prior's 3-sigma, the classical matcher, the map origin at the
    world centre and ``tiles.source`` = the map (when given).

    Args:
        cfg: the flight.
        world: the world patch (resolution and centre).
        map_source: tile source the node should read (GeoTIFF path), or None.
        truth_is_map: the ground truth was rendered from the map the node matches against,
            so the map has no georeferencing error relative to the truth and
            ``covariance.map_georef_sigma_m`` is 0; False for an independent second map,
            which keeps the node's default georeferencing error. ``attitude_sigma_rad`` is 0
            with the (exact) synthetic IMU and the roll/pitch jitter without it.

    Returns:
        ``ros__parameters`` content for ``cvgl_node``.
    """
    spec = cfg.camera
    cam = spec.camera()
    height = spec.height_above_ground_m
    if spec.kind == "nadir":
        half_diag_m = (
            0.5 * height * math.hypot(cam.width_px / cam.fx_px, cam.height_px / cam.fy_px)
        )
    else:
        half_diag_m = 60.0 if spec.kind == "ground" else 2.5 * height
    reach_m = half_diag_m + 3.0 * cfg.gnss.reported_sigma_m
    camera_gsd_m = height / cam.fx_px
    mpp = max(world.m_per_px, 0.5 * camera_gsd_m) if spec.kind == "nadir" else world.m_per_px
    size = int(min(2048, max(256, 32 * math.ceil(2.0 * reach_m / mpp / 32.0))))
    params: dict[str, Any] = {
        "image_transport": "compressed" if cfg.compressed else "raw",
        "camera_mount": spec.mount,
        "camera_pitch_rad": spec.mount_pitch_rad,
        "use_imu": cfg.imu,
        "fix_default_sigma_m": cfg.gnss.reported_sigma_m,
        "offline": True,
        "map_origin_lat_deg": world.center_lat_deg,
        "map_origin_lon_deg": world.center_lon_deg,
        "matcher": {"kind": "classical"},
        "depth": {"kind": "ground_plane", "camera_height_m": height},
        # Drones see the ground from far away; near-horizon ground points of a ground camera
        # are unreliable, so it keeps the nearer ones.
        "lifting": {"max_depth_m": 80.0 if spec.kind == "ground" else max(250.0, 4.0 * height)},
        "patch": {"patch_size_px": size, "patch_m_per_px": float(mpp)},
    }
    # The recording's own error budget: the synthetic IMU reports the exact roll/pitch, and
    # without it the node's static mount misses the body jitter by jitter_deg (1 sigma).
    covariance: dict[str, float] = {
        "attitude_sigma_rad": 0.0 if cfg.imu else math.radians(spec.jitter_deg)
    }
    if truth_is_map:
        covariance["map_georef_sigma_m"] = 0.0
    params["covariance"] = covariance
    if map_source:
        params["tiles"] = {"source": str(map_source)}
    return params


def write_params_yaml(path: Path, params: dict[str, Any]) -> Path:
    """Write ``cvgl_node: ros__parameters:`` YAML, validated against the node's table."""
    import yaml

    from cvgl_ros.ros.params import configs_from_params, flatten

    configs_from_params(flatten(params))  # fail here, not in the replay
    header = "# Node parameters matching this synthetic recording (written by cvgl-ros synth).\n"
    path.write_text(header + yaml.safe_dump({"cvgl_node": {"ros__parameters": params}}))
    return path


def synthesize(
    world: AerialPatch,
    cfg: FlightConfig,
    out_dir: str | Path,
    map_label: str,
    bag_name: str = "flight",
    map_source: str | None = None,
    truth_is_map: bool = True,
) -> SynthResult:
    """Render a flight over ``world`` and write the bag, ``truth.csv`` and ``synth.json``.

    Args:
        world: world patch; its centre is the origin of the trajectory.
        cfg: flight configuration.
        out_dir: output directory (created); the bag goes to ``out_dir/bag_name``.
        map_label: what the world is (path or ``synthetic``), recorded in ``synth.json``.
        bag_name: bag directory name.
        map_source: the tile source written into ``params.yaml`` (``tiles.source``); None
            leaves it for ``cvgl-ros replay --map``.
        truth_is_map: see :func:`replay_params`.

    Returns:
        Paths and statistics.

    Raises:
        FileExistsError: the bag directory already exists.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bag_path = out / bag_name
    if bag_path.exists():
        raise FileExistsError(f"{bag_path} exists; choose another --out or remove it")
    enu = LocalEnu(world.center_lat_deg, world.center_lon_deg)
    traj = make_trajectory(cfg.trajectory)
    true_en = np.stack([traj.east_m, traj.north_m], axis=1)
    gnss: GnssTrace = simulate_gnss(traj.stamps_s, true_en, cfg.gnss)
    fac = BagMessageFactory()
    ts = fac.typestore
    cam = cfg.camera.camera()
    rng_imu = np.random.default_rng(cfg.seed + 1)
    truth_rows: list[tuple[int, float, float, float]] = []
    coverages: list[float] = []
    prior_errors: list[float] = []
    image_topic = DEFAULT_IMAGE_TOPIC + ("/compressed" if cfg.compressed else "")
    image_type = "sensor_msgs/msg/CompressedImage" if cfg.compressed else "sensor_msgs/msg/Image"
    with open_writer(bag_path, cfg.storage) as writer:
        c_img = writer.add_connection(image_topic, image_type, typestore=ts)
        c_info = writer.add_connection(
            DEFAULT_CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo", typestore=ts
        )
        c_fix = writer.add_connection(DEFAULT_FIX_TOPIC, "sensor_msgs/msg/NavSatFix", typestore=ts)
        c_imu = (
            writer.add_connection(DEFAULT_IMU_TOPIC, "sensor_msgs/msg/Imu", typestore=ts)
            if cfg.imu
            else None
        )
        events: list[tuple[float, int, Any, Any, str]] = []
        fix_lat = np.full(len(gnss.stamps_s), np.nan)
        fix_lon = np.full(len(gnss.stamps_s), np.nan)
        ok = gnss.has_fix
        if np.any(ok):
            la, lo = enu.to_wgs84(gnss.east_m[ok], gnss.north_m[ok])
            fix_lat[ok], fix_lon[ok] = la, lo
        for j, t in enumerate(gnss.stamps_s):
            if not ok[j] and cfg.gnss.dropout_mode == "silent":
                continue
            msg = fac.navsatfix(
                float(fix_lat[j]),
                float(fix_lon[j]),
                gnss.reported_sigma_m,
                EPOCH_S + t,
                bool(ok[j]),
            )
            events.append((EPOCH_S + float(t), 0, c_fix, msg, "sensor_msgs/msg/NavSatFix"))
        for frame in render_frames(world, cfg):
            lat, lon = enu.to_wgs84(frame.east_m, frame.north_m)
            stamp_ns = round(frame.stamp_s * 1e9)
            truth_rows.append((stamp_ns, float(lat), float(lon), frame.yaw_enu_rad))
            coverages.append(frame.coverage)
            # The raw prior a naive system would use: the latest fix at or before the frame.
            before = np.nonzero((gnss.stamps_s + EPOCH_S <= frame.stamp_s + 1e-9) & ok)[0]
            if len(before):
                k = before[-1]
                prior_errors.append(
                    math.hypot(gnss.east_m[k] - frame.east_m, gnss.north_m[k] - frame.north_m)
                )
            if c_imu is not None:
                yaw_meas = frame.yaw_enu_rad + float(rng_imu.normal(0.0, cfg.imu_yaw_sigma_rad))
                wfb = world_from_body_rotation(yaw_meas, frame.pitch_rad, frame.roll_rad)
                events.append(
                    (
                        frame.stamp_s,
                        1,
                        c_imu,
                        fac.imu(wfb, frame.stamp_s, cfg.imu_yaw_sigma_rad),
                        "sensor_msgs/msg/Imu",
                    )
                )
            events.append(
                (
                    frame.stamp_s,
                    2,
                    c_info,
                    fac.camera_info(cam, frame.stamp_s, CAMERA_FRAME),
                    "sensor_msgs/msg/CameraInfo",
                )
            )
            img_msg = (
                fac.compressed_image(frame.image, frame.stamp_s, CAMERA_FRAME)
                if cfg.compressed
                else fac.image(frame.image, frame.stamp_s, CAMERA_FRAME)
            )
            events.append((frame.stamp_s, 3, c_img, img_msg, image_type))
            # Write everything up to this frame now, so images do not pile up in memory.
            events.sort(key=lambda e: (e[0], e[1]))
            keep: list[tuple[float, int, Any, Any, str]] = []
            for ev in events:
                if ev[0] <= frame.stamp_s + 1e-9:
                    writer.write(ev[2], round(ev[0] * 1e9), ts.serialize_cdr(ev[3], ev[4]))
                else:
                    keep.append(ev)
            events = keep
        for ev in sorted(events, key=lambda e: (e[0], e[1])):
            writer.write(ev[2], round(ev[0] * 1e9), ts.serialize_cdr(ev[3], ev[4]))

    truth_csv = out / "truth.csv"
    with truth_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["stamp_ns", "lat_deg", "lon_deg", "yaw_enu_rad"])
        for row in truth_rows:
            w.writerow([row[0], f"{row[1]:.10f}", f"{row[2]:.10f}", f"{row[3]:.6f}"])
    mean_cov = float(np.mean(coverages)) if coverages else 0.0
    if mean_cov < 0.9:
        LOGGER.warning(
            "frames show mapped ground on only %.0f %% of their pixels on average; "
            "the flight leaves the map",
            100 * mean_cov,
        )
    meta = {
        "map": map_label,
        "world": {
            "center_lat_deg": world.center_lat_deg,
            "center_lon_deg": world.center_lon_deg,
            "m_per_px": world.m_per_px,
            "size_px": list(world.size_px),
            "source_id": world.source_id,
        },
        "bag": bag_path.name,
        "storage": cfg.storage,
        "topics": {
            "image": image_topic,
            "camera_info": DEFAULT_CAMERA_INFO_TOPIC,
            "fix": DEFAULT_FIX_TOPIC,
            "imu": DEFAULT_IMU_TOPIC if cfg.imu else None,
        },
        "params": "params.yaml",
        "config": asdict(cfg),
        "num_frames": len(truth_rows),
        "mean_coverage": mean_cov,
        "prior_median_error_m": float(np.median(prior_errors)) if prior_errors else math.nan,
    }
    write_params_yaml(out / "params.yaml", replay_params(cfg, world, map_source, truth_is_map))
    meta_json = out / "synth.json"
    meta_json.write_text(json.dumps(meta, indent=2, default=str))
    return SynthResult(
        bag_path=bag_path,
        truth_csv=truth_csv,
        meta_json=meta_json,
        num_frames=len(truth_rows),
        mean_coverage=mean_cov,
        prior_median_error_m=meta["prior_median_error_m"],  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- CLI


def flight_config_from_args(args: argparse.Namespace) -> FlightConfig:
    """Build the flight configuration from parsed CLI arguments."""
    camera = CameraSpec(
        kind=args.camera,
        width_px=args.width,
        height_px=args.height,
        hfov_deg=args.hfov_deg,
        altitude_m=args.altitude_m,
        camera_height_m=args.camera_height_m,
        tilt_down_deg=args.tilt_down_deg,
        jitter_deg=args.jitter_deg,
    )
    traj = TrajectoryConfig(
        kind=args.trajectory,
        num_frames=args.frames,
        rate_hz=args.rate_hz,
        speed_m_per_s=args.speed_m_per_s,
        heading_rad=math.radians(args.heading_deg_enu),
        radius_m=args.radius_m,
        extent_m=args.extent_m,
        seed=args.seed,
    )
    gnss = GnssNoiseConfig(
        rate_hz=args.gnss_rate_hz,
        bias_east_m=args.gnss_bias_m[0],
        bias_north_m=args.gnss_bias_m[1],
        random_walk_m_per_sqrt_s=args.gnss_walk_m_per_sqrt_s,
        white_sigma_m=args.gnss_white_m,
        reported_sigma_m=args.gnss_sigma_m,
        dropout_rate_per_s=args.gnss_dropout_rate_per_s,
        dropout_mode=args.gnss_dropout_mode,
        seed=args.seed + 100,
    )
    photometric = {
        "none": PhotometricConfig.none(),
        "default": PhotometricConfig(),
        "strong": PhotometricConfig(0.6, 1.6, 0.1, 2.0, 6.0, 50),
    }[args.photometric]
    return FlightConfig(
        camera=camera,
        trajectory=traj,
        gnss=gnss,
        photometric=photometric,
        imu=not args.no_imu,
        compressed=args.compressed,
        storage=args.storage,
        seed=args.seed,
    )


def add_flight_arguments(p: argparse.ArgumentParser) -> None:
    """The flight options shared by ``synth`` and ``demo``."""
    g = p.add_argument_group("camera")
    g.add_argument("--camera", choices=CAMERA_KINDS, default="nadir")
    g.add_argument("--width", type=int, default=640, help="image width, px")
    g.add_argument("--height", type=int, default=480, help="image height, px")
    g.add_argument("--hfov-deg", type=float, default=60.0, help="horizontal field of view")
    g.add_argument("--altitude-m", type=float, default=80.0, help="drone height above ground")
    g.add_argument("--camera-height-m", type=float, default=1.6, help="ground camera height")
    g.add_argument("--tilt-down-deg", type=float, default=45.0, help="oblique/ground tilt")
    g.add_argument("--jitter-deg", type=float, default=1.5, help="body roll/pitch sigma")
    g = p.add_argument_group("trajectory")
    g.add_argument("--trajectory", choices=TRAJECTORY_KINDS, default="loop")
    g.add_argument("--frames", type=int, default=12)
    g.add_argument("--rate-hz", type=float, default=1.0, help="camera frame rate")
    g.add_argument("--speed-m-per-s", type=float, default=8.0)
    g.add_argument("--heading-deg-enu", type=float, default=0.0, help="initial ENU heading")
    g.add_argument("--radius-m", type=float, default=40.0, help="loop radius")
    g.add_argument("--extent-m", type=float, default=80.0, help="random-walk extent")
    g = p.add_argument_group("GNSS prior")
    g.add_argument("--gnss-rate-hz", type=float, default=5.0)
    g.add_argument("--gnss-bias-m", type=float, nargs=2, default=(6.0, -4.0), metavar=("E", "N"))
    g.add_argument("--gnss-walk-m-per-sqrt-s", type=float, default=0.3)
    g.add_argument("--gnss-white-m", type=float, default=1.5)
    g.add_argument("--gnss-sigma-m", type=float, default=10.0, help="reported sigma per axis")
    g.add_argument("--gnss-dropout-rate-per-s", type=float, default=0.0)
    g.add_argument("--gnss-dropout-mode", choices=("no_fix", "silent"), default="no_fix")
    g = p.add_argument_group("output")
    g.add_argument("--photometric", choices=("none", "default", "strong"), default="default")
    g.add_argument("--no-imu", action="store_true", help="do not write sensor_msgs/Imu")
    g.add_argument("--compressed", action="store_true", help="JPEG CompressedImage")
    g.add_argument("--storage", choices=STORAGE_KINDS, default="mcap")
    g.add_argument("--seed", type=int, default=0)


def _main(args: argparse.Namespace) -> int:
    cfg = flight_config_from_args(args)
    world = load_world(args.map, args.world_size_px, args.world_m_per_px)
    if args.map == "synthetic":
        map_source = str(write_geotiff(Path(args.out) / "synthetic_map.tif", world).resolve())
        print(f"synth: wrote the SYNTHETIC orthophoto {map_source}")
    else:
        map_source = str(Path(args.map).resolve())
    if args.match_map:
        # An independent second map (another year, sensor or resolution): the camera sees
        # --map, the node matches against --match-map.
        map_source = (
            args.match_map if "://" in args.match_map else str(Path(args.match_map).resolve())
        )
        print(f"synth: the node will match against the independent map {map_source}")
    result = synthesize(
        world,
        cfg,
        args.out,
        map_label=args.map,
        bag_name=args.bag_name,
        map_source=map_source,
        truth_is_map=not args.match_map,
    )
    print(f"synth: wrote {result.num_frames} frames to {result.bag_path}")
    print(f"synth: truth {result.truth_csv}, metadata {result.meta_json}")
    print(f"synth: node parameters {Path(args.out) / 'params.yaml'}")
    print(
        f"synth: mean ground coverage {100 * result.mean_coverage:.0f} %, "
        f"GNSS prior median error {result.prior_median_error_m:.2f} m"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``synth`` subcommand."""
    p = sub.add_parser(
        "synth", help="render a synthetic flight/drive from an orthophoto into a ROS 2 bag"
    )
    p.add_argument(
        "--map", default="synthetic", help="GeoTIFF path, or 'synthetic' (procedural map)"
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--bag-name", default="flight", help="bag directory name inside --out")
    p.add_argument(
        "--match-map",
        default=None,
        help="tile source written to params.yaml instead of --map (an independent second map, "
        "e.g. another year of the same area)",
    )
    p.add_argument(
        "--world-size-px", type=int, default=None, help="world patch side (default: whole map)"
    )
    p.add_argument("--world-m-per-px", type=float, default=None, help="world resolution")
    add_flight_arguments(p)
    p.set_defaults(func=_main)
