"""The node's parameter table and its validation into the frozen component configs.

One table, :data:`PARAMETERS`, drives everything: the node declares each entry with a
``ParameterDescriptor`` (description, range, read-only flag), the static test checks every
config file against it, and :func:`configs_from_params` turns a flat ``name -> value`` mapping
into the frozen dataclass configs of the components, raising :class:`ParameterError` naming the
offending parameter.

The table is derived from the component config dataclasses themselves (field names, types,
defaults and their ``Attributes:`` docstrings), so a field a component adds is a parameter the
next day, with its documentation. Sections (dotted names, nested maps in YAML):

========== =========================================== ==================
prefix     config                                      changeable at run
========== =========================================== ==================
(none)     :class:`NodeSettings` (topics, frames, ...)  some (see below)
lifting.   :class:`~cvgl_ros.core.config.LiftingConfig`     yes
ransac.    :class:`~cvgl_ros.core.config.RansacConfig`      yes
covariance. :class:`~cvgl_ros.core.config.CovarianceConfig` yes
gating.    :class:`~cvgl_ros.core.config.GatingConfig`      yes
patch_reuse. :class:`~cvgl_ros.core.config.PatchReuseConfig` yes
view.      :class:`~cvgl_ros.core.config.ViewConfig`        yes
height.    :class:`~cvgl_ros.core.config.HeightConfig`      yes
matcher.   :class:`~cvgl_ros.models.config.MatcherConfig`   no
depth.     :class:`~cvgl_ros.models.config.DepthConfig`     no
tiles.     :class:`~cvgl_ros.tiles.config.TileSourceConfig` no
patch.     :class:`~cvgl_ros.tiles.config.PatchConfig`      no
cache.     :class:`~cvgl_ros.tiles.config.CacheConfig`      no
prefetch.  :class:`~cvgl_ros.tiles.config.PrefetchConfig`   no
========== =========================================== ==================

``None`` (an optional field left unset) is spelled as a sentinel, because ROS parameters have
no null: NaN for floats, -1 for integers, ``""`` for strings and an empty/unset array.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cvgl_ros.core.config import (
    CovarianceConfig,
    GatingConfig,
    HeightConfig,
    LiftingConfig,
    LocalizerConfig,
    PatchReuseConfig,
    RansacConfig,
    ViewConfig,
)
from cvgl_ros.models.config import DepthConfig, MatcherConfig
from cvgl_ros.ros import constants as const
from cvgl_ros.ros.errors import ParameterError, ParameterFileError
from cvgl_ros.tiles.config import CacheConfig, PatchConfig, PrefetchConfig, TileSourceConfig

ParamKind = Literal["bool", "int", "float", "str", "int_array", "float_array", "str_array"]


@dataclass(frozen=True)
class NodeSettings:
    """Settings of the node itself (topics, frames, GNSS and IMU handling, outputs).

    Attributes:
        image_topic: camera image topic (``sensor_msgs/Image``); with ``image_transport``
            ``compressed`` the node subscribes to ``<image_topic>/compressed``.
        image_transport: ``raw`` (sensor_msgs/Image) or ``compressed``
            (sensor_msgs/CompressedImage, JPEG/PNG).
        image_qos: reliability of the image subscription: ``auto`` (starts best effort, then
            reliable while every publisher of the topic offers reliable, so that lost fragments
            of large images are resent; best effort again as soon as a best-effort publisher
            appears), ``best_effort`` (matches every publisher; a lost fragment loses the
            image) or ``reliable`` (does not match best-effort publishers: no image arrives
            from them, counted as ``image_qos_incompatible``). Keep-last 5, volatile.
        camera_info_topic: ``sensor_msgs/CameraInfo`` topic of the camera.
        camera_info_allow_resize: accept images whose size differs from their CameraInfo's
            (after binning/ROI) by one factor in x and y, scaling the intrinsics (a stream
            resized downstream of an unchanged CameraInfo). Off: such images are refused with
            ``camera_info:size_mismatch``, since the factor as likely means a CameraInfo for
            another resolution.
        max_principal_point_offset_fraction: a CameraInfo whose principal point lies farther
            from the centre of its declared image than this fraction of the width (height) is
            refused (``camera_info:principal_point``): its K was written for another image
            size. 0.5 only requires the principal point inside the image.
        camera_model: ``pinhole`` (intrinsics from CameraInfo) or ``equirectangular`` (360
            panorama; no CameraInfo needed).
        camera_mount: ``nadir`` (optical axis down, image top = body forward) or ``forward``
            (optical axis = body forward).
        camera_roll_rad: camera roll on the body on top of the base mount, radians.
        camera_pitch_rad: camera pitch on the body on top of the base mount, radians
            (positive tilts a forward camera down).
        camera_yaw_rad: camera yaw on the body on top of the base mount, radians.
        camera_x_m: camera optical centre in ``base_link``, forward, metres (FLU). The pose
            and fix are ``base_link``'s: the node removes this lever arm, turned by the yaw.
        camera_y_m: camera optical centre in ``base_link``, left, metres (FLU).
        camera_z_m: camera optical centre in ``base_link``, up, metres (FLU); matters when
            the body tilts (IMU roll/pitch).
        extrinsics_source: ``parameters`` (``camera_mount``, ``camera_*_rad``, ``camera_*_m``)
            or ``tf`` (the transform ``base_frame`` <- camera frame from TF, replacing all of
            them; needs tf2_ros, i.e. a ROS 2 install).
        base_frame: the robot's body frame (REP-105): child of ``~/pose``, frame of ``~/fix``,
            target of the TF lookup.
        camera_frame: TF frame of the camera's optical frame (``extrinsics_source: tf``);
            empty = each image's ``header.frame_id``.
        gnss_source: ``topic`` (sensor_msgs/NavSatFix on ``fix_topic``) or ``gpsd``.
        fix_topic: ``sensor_msgs/NavSatFix`` topic of the coarse GNSS prior.
        gpsd_host: gpsd host (``gnss_source: gpsd``).
        gpsd_port: gpsd TCP port.
        gpsd_poll_rate_hz: how often gpsd is polled for the current fix, Hz.
        gpsd_reconnect_max_s: longest wait between reconnection attempts (exponential backoff
            from 0.5 s), seconds.
        gpsd_timeout_s: longest wait for gpsd to accept the connection or answer, seconds;
            then the connection is dropped and retried.
        fix_default_sigma_m: horizontal standard deviation assumed for a fix whose covariance
            is unknown, metres.
        fix_min_sigma_m: floor of a fix's horizontal standard deviation, metres.
        fix_default_altitude_m: altitude published in ``~/fix`` when the GNSS prior has none
            (gpsd without a height above the ellipsoid, or a NavSatFix with NaN altitude), WGS84
            ellipsoidal metres, with a variance of 1e6 m^2 (unknown). The node does not measure
            altitude: with a known prior altitude it publishes that one and its variance.
        max_fix_age_s: a GNSS prior farther than this from the image stamp is stale and no
            pose is computed, seconds.
        fix_buffer_size: fixes kept for interpolation to image stamps.
        use_imu: take roll/pitch from ``sensor_msgs/Imu`` instead of the static mount.
        imu_topic: ``sensor_msgs/Imu`` topic.
        use_imu_yaw: also use the IMU yaw (REP-145 ENU orientation) as a yaw prior.
        imu_yaw_sigma_rad: yaw prior standard deviation when the IMU reports none, radians.
        max_imu_age_s: the orientation at an image stamp is interpolated (slerp) between the
            IMU samples just before and just after it, each of which must lie within this of
            the stamp, seconds; otherwise the frame falls back to the static mount with
            ``static_attitude_sigma_rad``.
        imu_max_extrapolation_s: an image stamp up to this far beyond the newest (or before
            the oldest) IMU sample uses that sample; farther, the IMU does not bracket the
            image (late, missing or out-of-order data) and the frame falls back to the static
            mount, seconds.
        imu_buffer_size: IMU samples kept for interpolation to image stamps (400 = 2 s at
            200 Hz).
        static_attitude_sigma_rad: roll/pitch uncertainty of the static mount, radians: with
            ``use_imu`` on, a frame without a usable IMU orientation (missing, late, not
            bracketing the image stamp) gets this as its ``covariance.attitude_sigma_rad``
            (when larger), so that the covariance covers the unknown tilt, and is counted in
            ``/diagnostics`` as ``imu_fallback.<reason>``. Set it to the platform's typical
            tilt (a multirotor in cruise: 0.05-0.15; a gimbal-stabilised camera: 0.02).
        map_frame: frame of ``~/pose`` (ENU).
        map_origin_lat_deg: latitude of the map frame origin, degrees; NaN = the first good
            fix (logged once).
        map_origin_lon_deg: longitude of the map frame origin, degrees; NaN = the first fix.
        fix_frame_id: frame_id of ``~/fix``; empty = ``base_frame`` (the fix is the
            base's position).
        tile_cache_path: tile cache database; empty = ``~/.cache/cvgl_ros/tiles.mbtiles``.
        offline: never touch the network for tiles (cache and local files only).
        publish_overlay: publish the ``~/debug/overlay`` image (costs CPU).
        diagnostics_rate_hz: rate of ``/diagnostics``, Hz.
        no_pose_warn_s: diagnostics turn WARN when no pose was published for this long while
            images arrive, seconds.
    """

    image_topic: str = const.DEFAULT_IMAGE_TOPIC
    image_transport: Literal["raw", "compressed"] = "raw"
    image_qos: Literal["auto", "best_effort", "reliable"] = "auto"
    camera_info_topic: str = const.DEFAULT_CAMERA_INFO_TOPIC
    camera_info_allow_resize: bool = False
    max_principal_point_offset_fraction: float = 0.2
    camera_model: Literal["pinhole", "equirectangular"] = "pinhole"
    camera_mount: Literal["nadir", "forward"] = "nadir"
    camera_roll_rad: float = 0.0
    camera_pitch_rad: float = 0.0
    camera_yaw_rad: float = 0.0
    camera_x_m: float = 0.0
    camera_y_m: float = 0.0
    camera_z_m: float = 0.0
    extrinsics_source: Literal["parameters", "tf"] = "parameters"
    base_frame: str = const.DEFAULT_BASE_FRAME
    camera_frame: str = ""
    gnss_source: Literal["topic", "gpsd"] = "topic"
    fix_topic: str = const.DEFAULT_FIX_TOPIC
    gpsd_host: str = "127.0.0.1"
    gpsd_port: int = 2947
    gpsd_poll_rate_hz: float = 5.0
    gpsd_reconnect_max_s: float = 10.0
    gpsd_timeout_s: float = 5.0
    fix_default_sigma_m: float = 10.0
    fix_min_sigma_m: float = 0.5
    fix_default_altitude_m: float = 0.0
    max_fix_age_s: float = 2.0
    fix_buffer_size: int = 32
    use_imu: bool = False
    imu_topic: str = const.DEFAULT_IMU_TOPIC
    use_imu_yaw: bool = False
    imu_yaw_sigma_rad: float = 0.3
    max_imu_age_s: float = 0.5
    imu_max_extrapolation_s: float = 0.02
    imu_buffer_size: int = 400
    static_attitude_sigma_rad: float = 0.05
    map_frame: str = const.DEFAULT_MAP_FRAME
    map_origin_lat_deg: float = math.nan
    map_origin_lon_deg: float = math.nan
    fix_frame_id: str = ""
    tile_cache_path: str = ""
    offline: bool = False
    publish_overlay: bool = False
    diagnostics_rate_hz: float = 1.0
    no_pose_warn_s: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "image_topic",
            "camera_info_topic",
            "fix_topic",
            "imu_topic",
            "map_frame",
            "base_frame",
        ):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name} must not be empty")
        for name in (
            "camera_roll_rad",
            "camera_pitch_rad",
            "camera_yaw_rad",
            "camera_x_m",
            "camera_y_m",
            "camera_z_m",
            "fix_default_altitude_m",
        ):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        for name in (
            "fix_default_sigma_m",
            "fix_min_sigma_m",
            "max_fix_age_s",
            "imu_yaw_sigma_rad",
            "max_imu_age_s",
            "gpsd_poll_rate_hz",
            "gpsd_reconnect_max_s",
            "gpsd_timeout_s",
            "diagnostics_rate_hz",
            "no_pose_warn_s",
        ):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0.0):
                raise ValueError(f"{name} must be > 0, got {v}")
        if not 1 <= self.gpsd_port <= 65535:
            raise ValueError(f"gpsd_port must be in [1, 65535], got {self.gpsd_port}")
        if self.fix_buffer_size < 2:
            raise ValueError(f"fix_buffer_size must be >= 2, got {self.fix_buffer_size}")
        if self.imu_buffer_size < 2:
            raise ValueError(f"imu_buffer_size must be >= 2, got {self.imu_buffer_size}")
        for name in ("imu_max_extrapolation_s", "static_attitude_sigma_rad"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"{name} must be >= 0, got {v}")
        if not 0.0 < self.max_principal_point_offset_fraction <= 0.5:
            raise ValueError(
                "max_principal_point_offset_fraction must be in (0, 0.5], got "
                f"{self.max_principal_point_offset_fraction}"
            )
        lat, lon = self.map_origin_lat_deg, self.map_origin_lon_deg
        if math.isnan(lat) != math.isnan(lon):
            raise ValueError("map_origin_lat_deg and map_origin_lon_deg must be set together")
        if not math.isnan(lat) and not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ValueError(f"map_origin_lat_deg/lon_deg out of range: ({lat}, {lon})")
        for name, choices in (
            ("image_transport", ("raw", "compressed")),
            ("image_qos", ("auto", "best_effort", "reliable")),
            ("camera_model", ("pinhole", "equirectangular")),
            ("camera_mount", ("nadir", "forward")),
            ("extrinsics_source", ("parameters", "tf")),
            ("gnss_source", ("topic", "gpsd")),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")

    @property
    def map_origin(self) -> tuple[float, float] | None:
        """(lat_deg, lon_deg) of the configured map origin, or None (first fix)."""
        if math.isnan(self.map_origin_lat_deg):
            return None
        return self.map_origin_lat_deg, self.map_origin_lon_deg


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter.

    Attributes:
        name: full dotted name (``gating.min_inliers``).
        kind: ROS parameter type.
        default: default value (None = declared without a value: the optional field is unset).
        description: what it does (from the config docstring), with its unit.
        min_value: inclusive lower bound, or None.
        max_value: inclusive upper bound, or None.
        choices: allowed string values, or empty.
        runtime: True when it may be changed while the node runs.
        optional: the config field accepts None, spelled as the kind's sentinel.
    """

    name: str
    kind: ParamKind
    default: Any
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()
    runtime: bool = False
    optional: bool = False


@dataclass(frozen=True)
class _Section:
    prefix: str
    cls: type[Any]
    runtime: bool


_SECTIONS: tuple[_Section, ...] = (
    _Section("", NodeSettings, False),
    _Section("lifting.", LiftingConfig, True),
    _Section("ransac.", RansacConfig, True),
    _Section("covariance.", CovarianceConfig, True),
    _Section("gating.", GatingConfig, True),
    _Section("patch_reuse.", PatchReuseConfig, True),
    _Section("view.", ViewConfig, True),
    _Section("height.", HeightConfig, True),
    _Section("matcher.", MatcherConfig, False),
    _Section("depth.", DepthConfig, False),
    _Section("tiles.", TileSourceConfig, False),
    _Section("patch.", PatchConfig, False),
    _Section("cache.", CacheConfig, False),
    _Section("prefetch.", PrefetchConfig, False),
)

# Node settings that take effect on the next frame when changed at run time.
_RUNTIME_NODE_SETTINGS = frozenset(
    {
        "fix_default_sigma_m",
        "fix_min_sigma_m",
        "fix_default_altitude_m",
        "max_fix_age_s",
        "use_imu_yaw",
        "imu_yaw_sigma_rad",
        "max_imu_age_s",
        "imu_max_extrapolation_s",
        "static_attitude_sigma_rad",
        "camera_info_allow_resize",
        "max_principal_point_offset_fraction",
        "publish_overlay",
        "no_pose_warn_s",
    }
)

# Inclusive ranges advertised in the descriptors (the config classes validate the rest).
_RANGES: dict[str, tuple[float, float]] = {
    "camera_roll_rad": (-math.pi, math.pi),
    "camera_pitch_rad": (-math.pi, math.pi),
    "camera_yaw_rad": (-math.pi, math.pi),
    "camera_x_m": (-100.0, 100.0),
    "camera_y_m": (-100.0, 100.0),
    "camera_z_m": (-100.0, 100.0),
    "gpsd_port": (1, 65535),
    "gpsd_poll_rate_hz": (0.1, 50.0),
    "gpsd_reconnect_max_s": (0.5, 600.0),
    "gpsd_timeout_s": (0.1, 120.0),
    "fix_default_sigma_m": (0.01, 10000.0),
    "fix_min_sigma_m": (0.01, 1000.0),
    "fix_default_altitude_m": (-1000.0, 100000.0),
    "max_fix_age_s": (0.01, 3600.0),
    "fix_buffer_size": (2, 10000),
    "imu_yaw_sigma_rad": (0.001, 10.0),
    "max_imu_age_s": (0.001, 60.0),
    "imu_max_extrapolation_s": (0.0, 1.0),
    "imu_buffer_size": (2, 100000),
    "static_attitude_sigma_rad": (0.0, 1.5),
    "max_principal_point_offset_fraction": (0.01, 0.5),
    "diagnostics_rate_hz": (0.1, 100.0),
    "no_pose_warn_s": (0.1, 3600.0),
    "lifting.max_depth_m": (0.01, 100000.0),
    "lifting.min_depth_m": (0.0, 100000.0),
    "ransac.inlier_threshold_m": (0.001, 1000.0),
    "ransac.max_iterations": (1, 1000000),
    "ransac.confidence": (0.5, 0.999999),
    "ransac.seed": (0, 2**31 - 1),
    "ransac.batch_size": (1, 100000),
    "ransac.initial_pool_fraction": (0.001, 1.0),
    "ransac.min_pool_size": (2, 1000000),
    "ransac.lo_iterations": (0, 100),
    "ransac.yaw_prior_gate_sigma": (0.1, 100.0),
    "ransac.position_prior_gate_sigma": (0.1, 1000.0),
    "covariance.base_inflation": (1.0, 1000.0),
    "gating.min_inliers": (2, 100000),
    "gating.min_inlier_ratio": (0.0, 1.0),
    "gating.scale_min": (1e-6, 1e6),
    "gating.scale_max": (1e-6, 1e6),
    "gating.prior_gate_sigma": (0.1, 1000.0),
    "patch_reuse.max_offset_fraction": (0.0, 0.99),
    "patch_reuse.coverage_sigma": (0.0, 100.0),
    "patch_reuse.max_age_s": (0.01, 3600.0),
    "matcher.classical.ratio": (0.01, 1.0),
    "matcher.classical.max_features": (8, 1000000),
    "matcher.learned.top_k": (1, 1000000),
    "matcher.learned.min_probability": (0.0, 0.999),
    "depth.camera_height_m": (0.01, 100000.0),
    "depth.range_m": (0.01, 1000000.0),
    "patch.patch_size_px": (8, 16384),
    "patch.patch_m_per_px": (0.001, 1000.0),
    "patch.min_valid_fraction": (0.0, 1.0),
    "tiles.max_retries": (0, 20),
    "tiles.tile_size_px": (256, 512),
}


# --------------------------------------------------------------------------- table derivation


def _attribute_docs(cls: type[Any]) -> dict[str, str]:
    """Parse the Google-style ``Attributes:`` section of a class docstring."""
    doc = cls.__doc__ or ""
    lines = doc.expandtabs().splitlines()
    out: dict[str, str] = {}
    in_section = False
    section_indent = 0
    current: list[str] = []
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped == "Attributes:":
            in_section, section_indent = True, indent
            continue
        if not in_section:
            continue
        if stripped and indent <= section_indent:
            break
        m = re.match(r"^([A-Za-z_][\w, ]*):\s*(.*)$", stripped)
        if m and indent <= section_indent + 4:
            current = []
            for name in (n.strip() for n in m.group(1).split(",")):
                out[name] = ""
                current.append(name)
            text = m.group(2)
        else:
            text = stripped
        for name in current:
            out[name] = f"{out[name]} {text}".strip()
    return out


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _classify(tp: Any) -> tuple[ParamKind, tuple[str, ...]] | None:
    """ROS kind and string choices of a field type; None for unsupported types."""
    origin = typing.get_origin(tp)
    if tp is bool:
        return "bool", ()
    if tp is int:
        return "int", ()
    if tp is float:
        return "float", ()
    if tp is str or tp is Path:
        return "str", ()
    if origin is Literal:
        values = typing.get_args(tp)
        if all(isinstance(v, str) for v in values):
            return "str", tuple(values)
        return None
    if origin is tuple:
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if args and all(a is int for a in args):
            return "int_array", ()
        if args and all(a is float for a in args):
            return "float_array", ()
        if args and all(a is str for a in args):
            return "str_array", ()
        if len(args) == 1 and typing.get_origin(args[0]) is tuple:
            inner = typing.get_args(args[0])
            if inner and all(a is str for a in inner):
                return "str_array", ()  # e.g. HTTP headers as "Name: value" strings
    return None


def _to_param_value(kind: ParamKind, value: Any) -> Any:
    if kind.endswith("_array"):
        items = list(value)
        if kind == "str_array":
            return [": ".join(v) if isinstance(v, tuple) else str(v) for v in items]
        return [float(v) for v in items] if kind == "float_array" else [int(v) for v in items]
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "str":
        return str(value)
    return value


def _sentinel(kind: ParamKind) -> Any:
    return {"float": math.nan, "int": -1, "str": ""}.get(kind)


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _specs_for(cls: type[Any], prefix: str, runtime: bool) -> list[ParamSpec]:
    hints = typing.get_type_hints(cls)
    docs = _attribute_docs(cls)
    specs: list[ParamSpec] = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        tp, optional = _strip_optional(hints[f.name])
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            specs.extend(_specs_for(tp, f"{name}.", runtime))
            continue
        classified = _classify(tp)
        if classified is None:
            continue  # not expressible as a ROS parameter: the config default applies
        kind, choices = classified
        default = _field_default(f)
        if default is dataclasses.MISSING:
            default = "" if kind == "str" else None  # required field: empty = "not set"
        elif default is None:
            default = _sentinel(kind)
        else:
            default = _to_param_value(kind, default)
        description = docs.get(f.name, "")
        if choices:
            description = f"{description} One of: {', '.join(choices)}.".strip()
        if optional:
            sentinel = {"float": "NaN", "int": "-1", "str": '""'}.get(kind, "unset")
            description = f"{description} {sentinel} = not set.".strip()
        low, high = _RANGES.get(name, (None, None))
        specs.append(
            ParamSpec(
                name=name,
                kind=kind,
                default=default,
                description=description,
                min_value=low,
                max_value=high,
                choices=choices,
                runtime=runtime or (prefix == "" and f.name in _RUNTIME_NODE_SETTINGS),
                optional=optional,
            )
        )
    return specs


def _build_table() -> dict[str, ParamSpec]:
    table: dict[str, ParamSpec] = {}
    for section in _SECTIONS:
        for spec in _specs_for(section.cls, section.prefix, section.runtime):
            table[spec.name] = spec
    return table


PARAMETERS: Mapping[str, ParamSpec] = _build_table()
"""Every parameter the node declares, by full dotted name."""


def runtime_parameter_names() -> frozenset[str]:
    """Names of the parameters that may be changed while the node runs."""
    return frozenset(n for n, s in PARAMETERS.items() if s.runtime)


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class NodeConfigs:
    """Everything the node builds from its parameters.

    Attributes:
        node: the node's own settings.
        localizer: the pose core's configuration.
        matcher: which matcher to build.
        depth: which depth provider to build.
        tiles: the tile source (None when ``tiles.source`` is empty: no map configured).
        patch: aerial patch size and resolution.
        cache: tile cache bounds.
        prefetch: prefetch around the fix.
    """

    node: NodeSettings
    localizer: LocalizerConfig
    matcher: MatcherConfig
    depth: DepthConfig
    tiles: TileSourceConfig | None
    patch: PatchConfig
    cache: CacheConfig
    prefetch: PrefetchConfig
    values: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(PARAMETERS), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_value(spec: ParamSpec, value: Any) -> Any:
    """Check one value against its spec; returns it normalised (ints accepted as floats).

    Raises:
        ParameterError: wrong type, out of range, or not one of the choices.
    """
    kind = spec.kind
    if value is None:
        if spec.default is None or spec.optional:
            return None
        raise ParameterError(spec.name, "must be set")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParameterError(spec.name, f"expected a bool, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(spec.name, f"expected an integer, got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(spec.name, f"expected a number, got {value!r}")
        value = float(value)
    elif kind == "str":
        if not isinstance(value, str):
            raise ParameterError(spec.name, f"expected a string, got {value!r}")
    else:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ParameterError(spec.name, f"expected a list, got {value!r}")
        items = list(value)
        want: tuple[type, ...] = {"int_array": (int,), "float_array": (int, float)}.get(
            kind, (str,)
        )
        if any(isinstance(v, bool) or not isinstance(v, want) for v in items):
            raise ParameterError(spec.name, f"expected a list of {kind[:-6]}, got {items!r}")
        return [float(v) for v in items] if kind == "float_array" else items
    if spec.choices and value not in spec.choices:
        raise ParameterError(spec.name, f"must be one of {list(spec.choices)}, got {value!r}")
    is_unset = spec.optional and (
        (kind == "float" and math.isnan(value)) or (kind == "int" and value == -1)
    )
    if not is_unset and kind in ("int", "float") and not math.isnan(value):
        if spec.min_value is not None and value < spec.min_value:
            raise ParameterError(spec.name, f"must be >= {spec.min_value}, got {value}")
        if spec.max_value is not None and value > spec.max_value:
            raise ParameterError(spec.name, f"must be <= {spec.max_value}, got {value}")
    return value


def _from_param_value(spec: ParamSpec, tp: Any, value: Any) -> Any:
    """Parameter value -> the config field's value (sentinels -> None, lists -> tuples)."""
    if value is None:
        return None
    if spec.optional:
        if spec.kind == "float" and math.isnan(value):
            return None
        if spec.kind == "int" and value == -1:
            return None
        if spec.kind == "str" and value == "":
            return None
        if spec.kind.endswith("_array") and len(value) == 0:
            return None
    if spec.kind.endswith("_array"):
        inner_tp, _ = _strip_optional(tp)
        args = typing.get_args(inner_tp)
        if args and typing.get_origin(args[0]) is tuple:  # "Name: value" pairs
            pairs = []
            for item in value:
                key, sep, val = str(item).partition(":")
                if not sep:
                    raise ParameterError(spec.name, f"entries must be 'Name: value', got {item!r}")
                pairs.append((key.strip(), val.strip()))
            return tuple(pairs)
        return tuple(value)
    return value


def _build_section(cls: type[Any], prefix: str, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        tp, _ = _strip_optional(hints[f.name])
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            kwargs[f.name] = _build_section(tp, f"{name}.", values)
            continue
        spec = PARAMETERS.get(name)
        if spec is None or name not in values:
            continue
        kwargs[f.name] = _from_param_value(spec, hints[f.name], values[name])
    try:
        return cls(**kwargs)
    except ParameterError:
        raise
    except (ValueError, TypeError) as exc:
        raise ParameterError(_blame(cls, prefix, str(exc)), str(exc)) from exc


def _blame(cls: type[Any], prefix: str, message: str) -> str:
    """The parameter a config error message is about: the first one it mentions.

    Nested names are searched by their path below the section (``learned.checkpoint_path``)
    as well as by their field name.
    """
    candidates: dict[str, str] = {}
    for name in PARAMETERS:
        if name.startswith(prefix):
            rel = name[len(prefix) :]
            candidates.setdefault(rel, name)
            candidates.setdefault(rel.rsplit(".", 1)[-1], name)
    best: tuple[int, int, str] | None = None
    for text, name in candidates.items():
        m = re.search(rf"(?<![\w.]){re.escape(text)}(?![\w])", message)
        if m is None:
            m = re.search(rf"(?<![\w]){re.escape(text)}(?![\w])", message)
        if m is not None:
            key = (m.start(), -len(text), name)
            if best is None or key < best:
                best = key
    if best is not None:
        return best[2]
    return prefix.rstrip(".") or cls.__name__


def configs_from_params(values: Mapping[str, Any]) -> NodeConfigs:
    """Validate a flat ``name -> value`` mapping into the frozen component configs.

    Missing names take their defaults. Every error names the parameter.

    Args:
        values: parameter values by full dotted name (as declared; YAML nesting flattened).

    Raises:
        ParameterError: an unknown name, a wrong type, a value out of range, or a value a
            component config rejects.
    """
    merged: dict[str, Any] = {n: s.default for n, s in PARAMETERS.items()}
    for name, value in values.items():
        spec = PARAMETERS.get(name)
        if spec is None:
            raise ParameterError(name, f"is not a parameter of {const.NODE_NAME}{_suggest(name)}")
        merged[name] = check_value(spec, value)
    node = _build_section(NodeSettings, "", merged)
    localizer = LocalizerConfig(
        lifting=_build_section(LiftingConfig, "lifting.", merged),
        ransac=_build_section(RansacConfig, "ransac.", merged),
        covariance=_build_section(CovarianceConfig, "covariance.", merged),
        gating=_build_section(GatingConfig, "gating.", merged),
        patch_reuse=_build_section(PatchReuseConfig, "patch_reuse.", merged),
        view=_build_section(ViewConfig, "view.", merged),
        height=_build_section(HeightConfig, "height.", merged),
        keep_debug=True,  # references only; the overlay and replay visualisation use it
    )
    if localizer.ransac.implementation == "numba":
        from cvgl_ros.core.ransac import resolve_implementation

        try:
            resolve_implementation(localizer.ransac)  # compiles the kernel now, or fails here
        except ImportError as exc:
            raise ParameterError("ransac.implementation", str(exc)) from exc
    matcher = _build_section(MatcherConfig, "matcher.", merged)
    depth = _build_section(DepthConfig, "depth.", merged)
    tiles = None
    if str(merged.get("tiles.source") or "").strip():
        tiles = _build_section(TileSourceConfig, "tiles.", merged)
    return NodeConfigs(
        node=node,
        localizer=localizer,
        matcher=matcher,
        depth=depth,
        tiles=tiles,
        patch=_build_section(PatchConfig, "patch.", merged),
        cache=_build_section(CacheConfig, "cache.", merged),
        prefetch=_build_section(PrefetchConfig, "prefetch.", merged),
        values=dict(merged),
    )


# --------------------------------------------------------------------------- parameter files


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested YAML mapping -> dotted names (``{"gating": {"min_inliers": 5}}`` ->
    ``{"gating.min_inliers": 5}``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _node_keys(node_name: str) -> tuple[str, ...]:
    bare = node_name.strip("/").split("/")[-1]
    return ("/**", "**", f"/**/{bare}", node_name, f"/{node_name.strip('/')}", bare, f"/{bare}")


def read_params_file(path: str | Path) -> Mapping[str, Any]:
    """Parse a ROS 2 parameter YAML and check its shape (``NODE: ros__parameters: {...}``).

    Returns:
        The parsed top-level mapping.

    Raises:
        ParameterFileError: the file is missing or unreadable, is not valid YAML (the message
            names the line and column), or is not shaped like a ROS parameter file.
    """
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterFileError(str(path), f"cannot be read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParameterFileError(str(path), f"is not valid YAML{where}: {problem}") from exc
    if not isinstance(data, Mapping):
        raise ParameterFileError(str(path), "is not a ROS parameter file (top level is not a map)")
    if not _holds_ros_parameters(data):
        raise ParameterFileError(
            str(path), "is not a ROS parameter file (no 'NODE: ros__parameters:' map in it)"
        )
    return data


def _holds_ros_parameters(tree: Mapping[str, Any]) -> bool:
    """True when some (namespace-nested) entry of a parameter YAML is ``ros__parameters: {}``."""
    for key, body in tree.items():
        if not isinstance(body, Mapping):
            continue
        if key == "ros__parameters" or _holds_ros_parameters(body):
            return True
    return False


def load_params_file(path: str | Path, node_name: str = const.NODE_NAME) -> dict[str, Any]:
    """Read the ``ros__parameters`` of ``node_name`` (and of ``/**``) from a parameter YAML.

    Returns:
        Flat dotted ``name -> value`` mapping, wildcard entries first, then the node's own.

    Raises:
        ParameterError: the file is unreadable, not valid YAML, not a ROS parameter file or
            has no entry for the node.
    """
    data = read_params_file(path)
    values: dict[str, Any] = {}
    found = False
    for key in _node_keys(node_name):
        body = data.get(key)
        if isinstance(body, Mapping) and isinstance(body.get("ros__parameters"), Mapping):
            values.update(flatten(body["ros__parameters"]))
            found = True
    if not found:
        raise ParameterFileError(
            str(path), f"has no '{node_name}: ros__parameters:' (keys: {sorted(map(str, data))})"
        )
    return values


def descriptor_fields(spec: ParamSpec) -> dict[str, Any]:
    """Keyword arguments of ``rcl_interfaces.msg.ParameterDescriptor`` for a spec (no ranges)."""
    text = spec.description
    if not spec.runtime:
        text = f"{text} (read at start-up)".strip()
    return {"name": spec.name, "description": text, "read_only": False}


def parse_override(text: str) -> tuple[str, Any]:
    """``name:=value`` (YAML value syntax, as ``--ros-args -p``) -> (name, value).

    Raises:
        ParameterError: malformed text.
    """
    name, sep, raw = text.partition(":=")
    if not sep or not name.strip():
        raise ParameterError(text, "overrides are written name:=value")
    return name.strip(), yaml.safe_load(raw)


def merged_values(
    params_file: str | Path | None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    node_name: str = const.NODE_NAME,
) -> dict[str, Any]:
    """Parameter file values updated with overrides (a mapping or ``name:=value`` strings)."""
    values = load_params_file(params_file, node_name) if params_file else {}
    if overrides is None:
        return values
    if isinstance(overrides, Mapping):
        values.update(overrides)
    else:
        values.update(dict(parse_override(o) for o in overrides))
    return values


def parameter_table_markdown() -> str:
    """The parameter table as Markdown (docs/NODE.md embeds it)."""
    rows = [
        "| parameter | type | default | run time | description |",
        "|---|---|---|---|---|",
    ]
    for spec in PARAMETERS.values():
        default = "(unset)" if spec.default is None else repr(spec.default)
        bounds = ""
        if spec.min_value is not None and spec.max_value is not None:
            bounds = f" Range [{spec.min_value:g}, {spec.max_value:g}]."
        text = f"{spec.description}{bounds}".replace("``", "`").replace("|", "\\|")
        rows.append(
            f"| `{spec.name}` | {spec.kind} | `{default}` | {'yes' if spec.runtime else ''} "
            f"| {text} |"
        )
    return "\n".join(rows)
