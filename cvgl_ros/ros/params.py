"""The node's parameters: derived from the marked config fields, validated into the configs.

A config field is a parameter of ``cvgl_node`` only when its dataclass declares it with
:func:`~cvgl_ros.core.schema.param` (description, range, run-time flag, the kind it belongs to):
that marker is the one source of truth. :data:`PARAMETERS` collects them under the sections
below; the node declares, for the selected kinds only (:func:`declared_names`), each with a
``ParameterDescriptor``; :func:`configs_from_params` turns a flat ``name -> value`` mapping into
the frozen component configs, raising :class:`ParameterError` naming the offending parameter;
:func:`parameter_table_markdown` writes docs/NODE.md's parameter section
(``cvgl-ros params --markdown``).

========================= ============================================================
prefix                    config (marked fields only)
========================= ============================================================
(none)                    :class:`NodeSettings` (camera, GNSS, IMU, frames, outputs)
``lifting.`` ... ``height.`` the pose core's sections (:mod:`cvgl_ros.core.config`)
``matcher.``              :class:`~cvgl_ros.models.config.MatcherConfig`; ``matcher.<kind>.*``
                          only for the selected ``matcher.kind``
``depth.``                :class:`~cvgl_ros.models.config.DepthConfig`; per ``depth.kind``
``tiles.`` ``patch.``     :mod:`cvgl_ros.tiles.config`; the HTTP and WMS options and
``cache.``                ``cache.*`` only for a ``tiles.source`` of that kind
========================= ============================================================

Internals (unmarked fields) are not parameters: they keep their defaults, or take the values of
the named preset a section's ``preset`` parameter selects (``ransac.preset``,
``matcher.classical.preset``; :class:`~cvgl_ros.core.schema.Presets`). Input topics are fixed
relative names (:mod:`cvgl_ros.ros.constants`), changed by remapping, not by parameters.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from cvgl_ros.core.schema import (
    OnlyFor,
    Presets,
    check_ranges,
    param,
    param_meta,
    presets_of,
    section_meta,
)
from cvgl_ros.models.config import DepthConfig, MatcherConfig
from cvgl_ros.ros import constants as const
from cvgl_ros.ros.errors import ParameterError, ParameterFileError
from cvgl_ros.tiles.config import (
    HTTP_SOURCE_KINDS,
    CacheConfig,
    PatchConfig,
    PrefetchConfig,
    TileSourceConfig,
    source_kind,
)

ParamKind = Literal["bool", "int", "float", "str", "int_array", "float_array", "str_array"]

_ANGLE_RAD = (-math.pi, math.pi)
_LEVER_ARM_M = (-100.0, 100.0)


@dataclass(frozen=True)
class NodeSettings:
    """Settings of the node itself (camera mount, GNSS and IMU handling, frames, outputs).

    Marked fields are parameters without a prefix (their descriptions are in the markers);
    the others are internals.

    Attributes:
        camera_info_allow_resize: accept images whose size differs from their CameraInfo's
            (after binning/ROI) by one factor in x and y, scaling the intrinsics (a stream
            resized downstream of an unchanged CameraInfo). Off: such images are refused with
            ``camera_info:size_mismatch``, since the factor as likely means a CameraInfo for
            another resolution.
        max_principal_point_offset_fraction: a CameraInfo whose principal point lies farther
            from the centre of its declared image than this fraction of the width (height) is
            refused (``camera_info:principal_point``): its K was written for another image
            size. 0.5 only requires the principal point inside the image.
        gpsd_poll_rate_hz: how often gpsd is polled for the current fix, Hz.
        gpsd_reconnect_max_s: longest wait between reconnection attempts (exponential backoff
            from 0.5 s), seconds.
        gpsd_timeout_s: longest wait for gpsd to accept the connection or answer, seconds;
            then the connection is dropped and retried.
        fix_min_sigma_m: floor of a fix's horizontal standard deviation, metres.
        fix_default_altitude_m: altitude published in ``~/fix`` when the GNSS prior has none
            (gpsd without a height above the ellipsoid, or a NavSatFix with NaN altitude), WGS84
            ellipsoidal metres, with a variance of 1e6 m^2 (unknown). The node does not measure
            altitude: with a known prior altitude it publishes that one and its variance.
        fix_buffer_size: fixes kept for interpolation to image stamps.
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
        fix_frame_id: frame_id of ``~/fix``; empty = ``base_frame`` (the fix is the
            base's position).
        no_pose_warn_s: diagnostics turn WARN when no pose was published for this long while
            images arrive, seconds.
    """

    image_transport: Literal["raw", "compressed"] = param(
        "raw",
        description=f"""raw (sensor_msgs/Image on {const.IMAGE_TOPIC}) or compressed
            (sensor_msgs/CompressedImage, JPEG/PNG, on
            {const.IMAGE_TOPIC}{const.COMPRESSED_SUFFIX}).""",
    )
    image_qos: Literal["auto", "best_effort", "reliable"] = param(
        "auto",
        description="""reliability of the image subscription: auto (best effort at first,
            then reliable while every publisher of the topic offers reliable, so that lost
            fragments of large images are resent; best effort again as soon as a best-effort
            publisher appears), best_effort (matches every publisher; a lost fragment loses the
            image) or reliable (does not match best-effort publishers: no image arrives from
            them, counted as image_qos_incompatible). Keep-last 5, volatile.""",
    )
    camera_info_allow_resize: bool = False
    max_principal_point_offset_fraction: float = 0.2
    camera_model: Literal["pinhole", "equirectangular"] = param(
        "pinhole",
        description="""pinhole (intrinsics from CameraInfo) or equirectangular (360 panorama;
            no CameraInfo needed).""",
    )
    camera_mount: Literal["nadir", "forward"] = param(
        "nadir",
        description="""base camera orientation on the body: nadir (optical axis down, image
            top = body forward) or forward (optical axis = body forward).""",
    )
    camera_roll_rad: float = param(
        0.0, description="camera roll on top of camera_mount, radians.", range=_ANGLE_RAD
    )
    camera_pitch_rad: float = param(
        0.0,
        description="""camera pitch on top of camera_mount, radians (positive tilts a forward
            camera down).""",
        range=_ANGLE_RAD,
    )
    camera_yaw_rad: float = param(
        0.0, description="camera yaw on top of camera_mount, radians.", range=_ANGLE_RAD
    )
    camera_x_m: float = param(
        0.0,
        description="""camera optical centre in base_frame, forward, metres (FLU). ~/pose and
            ~/fix are base_frame's: the node removes this lever arm, turned by the yaw.""",
        range=_LEVER_ARM_M,
    )
    camera_y_m: float = param(
        0.0, description="camera optical centre in base_frame, left, metres.", range=_LEVER_ARM_M
    )
    camera_z_m: float = param(
        0.0,
        description="""camera optical centre in base_frame, up, metres (matters when the body
            tilts: IMU roll/pitch).""",
        range=_LEVER_ARM_M,
    )
    extrinsics_source: Literal["parameters", "tf"] = param(
        "parameters",
        description="""parameters (camera_mount, camera_*_rad, camera_*_m) or tf (the
            transform base_frame <- camera frame from TF, replacing all of them; needs
            tf2_ros, i.e. a ROS 2 install).""",
    )
    base_frame: str = param(
        const.DEFAULT_BASE_FRAME,
        description="""the robot's body frame (REP-105): child of ~/pose, frame of ~/fix,
            target of the TF lookup.""",
    )
    camera_frame: str = param(
        "",
        description="""TF frame of the camera's optical frame; empty = each image's
            header.frame_id.""",
        only_for=("extrinsics_source", ("tf",)),
    )
    gnss_source: Literal["topic", "gpsd"] = param(
        "topic",
        description=f"""where the coarse GNSS prior comes from: topic (sensor_msgs/NavSatFix
            on {const.FIX_TOPIC}) or gpsd (gpsd_host:gpsd_port).""",
    )
    gpsd_host: str = param(
        "127.0.0.1", description="gpsd host.", only_for=("gnss_source", ("gpsd",))
    )
    gpsd_port: int = param(
        2947,
        description="gpsd TCP port.",
        range=(1, 65535),
        only_for=("gnss_source", ("gpsd",)),
    )
    gpsd_poll_rate_hz: float = 5.0
    gpsd_reconnect_max_s: float = 10.0
    gpsd_timeout_s: float = 5.0
    fix_default_sigma_m: float = param(
        10.0,
        description="""horizontal standard deviation assumed for a fix whose covariance is
            unknown (or for gpsd without error estimates), metres.""",
        range=(0.01, 10000.0),
        runtime=True,
    )
    fix_min_sigma_m: float = 0.5
    fix_default_altitude_m: float = 0.0
    max_fix_age_s: float = param(
        2.0,
        description="""a GNSS prior farther than this from the image stamp is stale and no
            pose is computed, seconds.""",
        range=(0.01, 3600.0),
        runtime=True,
    )
    fix_buffer_size: int = 32
    use_imu: bool = param(
        False,
        description=f"""take roll/pitch from sensor_msgs/Imu on {const.IMU_TOPIC} (slerped to
            each image stamp) instead of the static mount.""",
    )
    use_imu_yaw: bool = param(
        False,
        description="also use the IMU yaw (REP-145 ENU orientation) as a yaw prior.",
        runtime=True,
    )
    imu_yaw_sigma_rad: float = param(
        0.3,
        description="yaw prior standard deviation when the IMU reports none, radians.",
        range=(0.001, 10.0),
        runtime=True,
    )
    max_imu_age_s: float = 0.5
    imu_max_extrapolation_s: float = 0.02
    imu_buffer_size: int = 400
    static_attitude_sigma_rad: float = param(
        0.05,
        description="""roll/pitch uncertainty of the static mount, radians: with use_imu, a
            frame without a usable IMU orientation (missing, late, not bracketing the image
            stamp) gets this as its covariance.attitude_sigma_rad (when larger), and is counted
            in /diagnostics as imu_fallback.<reason>. The platform's typical tilt (a
            multirotor in cruise: 0.05-0.15; a gimbal-stabilised camera: 0.02).""",
        range=(0.0, 1.5),
        runtime=True,
    )
    map_frame: str = param(const.DEFAULT_MAP_FRAME, description="frame of ~/pose (ENU).")
    map_origin_lat_deg: float = param(
        math.nan,
        description="""latitude of the map frame origin, degrees; NaN = the first good fix
            (logged once).""",
        range=(-90.0, 90.0),
    )
    map_origin_lon_deg: float = param(
        math.nan,
        description="longitude of the map frame origin, degrees; NaN = the first good fix.",
        range=(-180.0, 180.0),
    )
    fix_frame_id: str = ""
    tile_cache_path: str = param(
        "",
        description="""tile cache database of network sources; empty =
            ~/.cache/cvgl_ros/tiles.mbtiles.""",
    )
    offline: bool = param(
        False,
        description="""never touch the network for tiles: the tile cache and local files only
            (fill the cache first: cvgl-ros prefetch).""",
    )
    publish_overlay: bool = param(
        False, description="publish the ~/debug/overlay image (costs CPU).", runtime=True
    )
    diagnostics_rate_hz: float = param(
        1.0, description="rate of /diagnostics, Hz.", range=(0.1, 100.0)
    )
    no_pose_warn_s: float = 5.0

    def __post_init__(self) -> None:
        check_ranges(self)
        for name in ("map_frame", "base_frame"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name} must not be empty")
        for name in (
            "fix_min_sigma_m",
            "gpsd_poll_rate_hz",
            "gpsd_reconnect_max_s",
            "gpsd_timeout_s",
            "max_imu_age_s",
            "no_pose_warn_s",
        ):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0.0):
                raise ValueError(f"{name} must be > 0, got {v}")
        if not math.isfinite(self.fix_default_altitude_m):
            raise ValueError("fix_default_altitude_m must be finite")
        if self.fix_buffer_size < 2:
            raise ValueError(f"fix_buffer_size must be >= 2, got {self.fix_buffer_size}")
        if self.imu_buffer_size < 2:
            raise ValueError(f"imu_buffer_size must be >= 2, got {self.imu_buffer_size}")
        if not (math.isfinite(self.imu_max_extrapolation_s) and self.imu_max_extrapolation_s >= 0):
            raise ValueError(
                f"imu_max_extrapolation_s must be >= 0, got {self.imu_max_extrapolation_s}"
            )
        if not 0.0 < self.max_principal_point_offset_fraction <= 0.5:
            raise ValueError(
                "max_principal_point_offset_fraction must be in (0, 0.5], got "
                f"{self.max_principal_point_offset_fraction}"
            )
        if math.isnan(self.map_origin_lat_deg) != math.isnan(self.map_origin_lon_deg):
            raise ValueError("map_origin_lat_deg and map_origin_lon_deg must be set together")
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


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Condition:
    """A parameter exists only while a selector parameter has one of some values.

    Attributes:
        selector: full name of the selecting parameter (``matcher.kind``).
        values: the selector values (its kind, with ``kind_of``) that declare the parameter.
        kind_of: value -> kind for selectors whose value is not the kind itself
            (``tiles.source``), or None.
    """

    selector: str
    values: tuple[Any, ...]
    kind_of: Callable[[Any], Any] | None = None

    def kind(self, value: Any) -> Any:
        """The selector's kind for ``value`` (None for an empty string: nothing selected).

        Raises:
            ValueError: ``kind_of`` rejects the value.
        """
        if self.kind_of is None:
            return value
        if isinstance(value, str) and not value.strip():
            return None
        return self.kind_of(value)

    def describe(self) -> str:
        """``matcher.kind: learned`` or ``a tiles.source of kind xyz or wms``."""
        values = " or ".join(str(v) for v in self.values)
        if self.kind_of is not None:
            return f"a {self.selector} of kind {values}"
        return f"{self.selector}: {values}"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter.

    Attributes:
        name: full dotted name (``gating.min_inliers``).
        kind: ROS parameter type.
        default: default value (``""`` for the required ``tiles.source``).
        description: what it does, with its unit (from the field's marker).
        min_value: inclusive lower bound of a numeric parameter (of each item of an array).
        max_value: inclusive upper bound.
        choices: allowed string values, or empty.
        runtime: True when it may be changed while the node runs.
        only_for: conditions that must all hold for the parameter to be declared.
    """

    name: str
    kind: ParamKind
    default: Any
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()
    runtime: bool = False
    only_for: tuple[Condition, ...] = ()

    @property
    def nan_unset(self) -> bool:
        """NaN is this float parameter's "not set" (its default is NaN)."""
        return isinstance(self.default, float) and math.isnan(self.default)


@dataclass(frozen=True)
class _Section:
    prefix: str
    cls: type[Any]
    only_for: tuple[Condition, ...] = ()


_HTTP_SOURCE = (Condition("tiles.source", HTTP_SOURCE_KINDS, source_kind),)

_SECTIONS: tuple[_Section, ...] = (
    _Section("", NodeSettings),
    _Section("lifting.", LiftingConfig),
    _Section("ransac.", RansacConfig),
    _Section("covariance.", CovarianceConfig),
    _Section("gating.", GatingConfig),
    _Section("patch_reuse.", PatchReuseConfig),
    _Section("view.", ViewConfig),
    _Section("height.", HeightConfig),
    _Section("matcher.", MatcherConfig),
    _Section("depth.", DepthConfig),
    _Section("tiles.", TileSourceConfig),
    _Section("patch.", PatchConfig),
    _Section("cache.", CacheConfig, _HTTP_SOURCE),
    _Section("prefetch.", PrefetchConfig, _HTTP_SOURCE),
)
RUNTIME_PREFIXES: tuple[str, ...] = (
    "",
    "lifting.",
    "ransac.",
    "covariance.",
    "gating.",
    "patch_reuse.",
    "view.",
    "height.",
)
"""Sections whose parameters may be run-time changeable (the pipeline re-applies them)."""


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


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _condition(only_for: OnlyFor | None, prefix: str, cls: type[Any]) -> tuple[Condition, ...]:
    """A field marker's condition, its selector resolved to the full parameter name."""
    if only_for is None:
        return ()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    selector = fields.get(only_for.selector)
    meta = None if selector is None else param_meta(selector)
    if meta is None:
        raise TypeError(
            f"{cls.__name__}: only_for selector {only_for.selector!r} is not a parameter of it"
        )
    return (Condition(f"{prefix}{only_for.selector}", only_for.values, meta.kind_of),)


def _specs_for(cls: type[Any], prefix: str, conditions: tuple[Condition, ...]) -> list[ParamSpec]:
    """The parameters of a config class: its marked fields, its preset, marked sections."""
    hints = typing.get_type_hints(cls)
    specs: list[ParamSpec] = []
    presets = presets_of(cls)
    if presets is not None:
        specs.append(
            ParamSpec(
                name=f"{prefix}preset",
                kind="str",
                default="default",
                description=presets.description,
                choices=presets.names,
                runtime=presets.runtime,
                only_for=conditions,
            )
        )
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        sect = section_meta(f)
        if sect is not None:
            sub = hints[f.name]
            extra = _condition(sect.only_for, prefix, cls)
            specs.extend(_specs_for(sub, f"{name}.", conditions + extra))
            continue
        meta = param_meta(f)
        if meta is None:
            continue  # an internal: its default, or its section's preset
        classified = _classify(hints[f.name])
        if classified is None:
            raise TypeError(f"{cls.__name__}.{f.name}: type {hints[f.name]} is no parameter type")
        kind, choices = classified
        default = _field_default(f)
        default = "" if default is dataclasses.MISSING else _to_param_value(kind, default)
        low, high = meta.range if meta.range is not None else (None, None)
        specs.append(
            ParamSpec(
                name=name,
                kind=kind,
                default=default,
                description=meta.description,
                min_value=low,
                max_value=high,
                choices=choices,
                runtime=meta.runtime,
                only_for=conditions + _condition(meta.only_for, prefix, cls),
            )
        )
    return specs


def _build_table() -> dict[str, ParamSpec]:
    table: dict[str, ParamSpec] = {}
    for section in _SECTIONS:
        for spec in _specs_for(section.cls, section.prefix, section.only_for):
            table[spec.name] = spec
    return table


def _walk_sections() -> list[tuple[str, type[Any]]]:
    """(prefix, config class) of every section, nested kind sections included."""
    out: list[tuple[str, type[Any]]] = []

    def walk(cls: type[Any], prefix: str) -> None:
        out.append((prefix, cls))
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if section_meta(f) is not None:
                walk(hints[f.name], f"{prefix}{f.name}.")

    for section in _SECTIONS:
        walk(section.cls, section.prefix)
    return out


def _preset_table() -> dict[str, Presets]:
    """``<prefix>preset`` -> the presets it selects from."""
    return {
        f"{prefix}preset": presets
        for prefix, cls in _walk_sections()
        if (presets := presets_of(cls)) is not None
    }


def _internal_table() -> dict[str, type[Any]]:
    """Full name of every internal (unmarked) field -> its config class."""
    out: dict[str, type[Any]] = {}
    for prefix, cls in _walk_sections():
        for f in dataclasses.fields(cls):
            if param_meta(f) is None and section_meta(f) is None:
                out[f"{prefix}{f.name}"] = cls
    return out


PARAMETERS: Mapping[str, ParamSpec] = _build_table()
"""Every parameter of the node, of every kind, by full dotted name (the node declares those
of the selected kinds: :func:`declared_names`)."""
PRESETS: Mapping[str, Presets] = _preset_table()
"""The named presets of each ``*.preset`` parameter."""
_INTERNALS: Mapping[str, type[Any]] = _internal_table()
# Names the node declared before issue 15 under another name (for the error message only:
# an old name is refused, never silently mapped).
_RENAMED: Mapping[str, str] = {
    "gating.prior_gate_sigma": "gating.prior_gate_n_sigma",
    "covariance.aerial_px_sigma": "covariance.aerial_sigma_px",
    "ransac.yaw_prior_gate_sigma": "ransac.yaw_prior_gate_n_sigma",
    "ransac.position_prior_gate_sigma": "ransac.position_prior_gate_n_sigma",
    "patch_reuse.coverage_sigma": "patch_reuse.coverage_n_sigma",
    "view.coverage_sigma": "view.coverage_n_sigma",
    "height.scale_gate_sigma": "height.scale_gate_n_sigma",
}
_TOPIC_PARAMETERS: Mapping[str, str] = {
    "image_topic": const.IMAGE_TOPIC,
    "camera_info_topic": const.CAMERA_INFO_TOPIC,
    "fix_topic": const.FIX_TOPIC,
    "imu_topic": const.IMU_TOPIC,
}


def runtime_parameter_names() -> frozenset[str]:
    """Names of the parameters that may be changed while the node runs."""
    return frozenset(n for n, s in PARAMETERS.items() if s.runtime)


def _selector_kinds(values: Mapping[str, Any]) -> dict[str, Any]:
    """The kind each selector names, for values merged over the defaults.

    Raises:
        ParameterError: a selector value its ``kind_of`` rejects (an unknown tile source).
    """
    kinds: dict[str, Any] = {}
    for spec in PARAMETERS.values():
        for cond in spec.only_for:
            if cond.selector in kinds:
                continue
            value = values.get(cond.selector, PARAMETERS[cond.selector].default)
            try:
                kinds[cond.selector] = cond.kind(value)
            except ValueError as exc:
                raise ParameterError(cond.selector, str(exc)) from exc
    return kinds


def _is_declared(spec: ParamSpec, kinds: Mapping[str, Any]) -> bool:
    return all(kinds[c.selector] in c.values for c in spec.only_for)


def declared_names(values: Mapping[str, Any] | None = None) -> list[str]:
    """The parameters the node declares for these values (selectors from them or defaults).

    Args:
        values: parameter values by full name (only the selectors matter).

    Raises:
        ParameterError: a selector value its kind function rejects.
    """
    kinds = _selector_kinds(values or {})
    return [name for name, spec in PARAMETERS.items() if _is_declared(spec, kinds)]


def check_selected(values: Mapping[str, Any]) -> None:
    """Refuse values given for parameters of kinds that are not selected.

    Raises:
        ParameterError: e.g. ``parameter 'matcher.learned.checkpoint_path': is only used with
            matcher.kind: learned (matcher.kind is 'classical')``.
    """
    kinds = _selector_kinds(values)
    for name in values:
        spec = PARAMETERS.get(name)
        if spec is None:
            continue
        for cond in spec.only_for:
            if kinds[cond.selector] not in cond.values:
                value = values.get(cond.selector, PARAMETERS[cond.selector].default)
                now = (
                    f"{cond.selector} is {value!r}"
                    if cond.kind_of is None or kinds[cond.selector] is None
                    else f"{cond.selector} {value!r} is of kind {kinds[cond.selector]}"
                )
                raise ParameterError(name, f"is only used with {cond.describe()} ({now})")


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
        values: the parameter values they were built from (declared ones, with defaults).
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


def _internal_text(name: str) -> str:
    """``an internal of RansacConfig, set by ransac.preset (default, fast, thorough)``."""
    cls = _INTERNALS[name]
    prefix, _, field_name = name.rpartition(".")
    presets = PRESETS.get(f"{prefix}.preset" if prefix else "preset")
    if presets is not None and any(field_name in presets.values(p) for p in presets.names):
        how = f"set by {prefix}.preset ({', '.join(presets.names)})"
    else:
        how = f"its default is in {cls.__module__}"
    return f"an internal of {cls.__name__}, {how}"


def _unknown(name: str) -> str:
    """Why ``name`` is not a parameter, and what to do instead."""
    head = f"is not a parameter of {const.NODE_NAME}"
    if name in _RENAMED:
        new = _RENAMED[name]
        tail = f", {_internal_text(new)}" if new in _INTERNALS else ""
        return f"{head}: renamed '{new}'{tail}"
    if name in _TOPIC_PARAMETERS:
        topic = _TOPIC_PARAMETERS[name]
        return f"{head}: input topics are fixed, remap {topic} (-r {topic}:=/your/topic)"
    if name in _INTERNALS:
        return f"{head}: {_internal_text(name)}"
    close = difflib.get_close_matches(name, list(PARAMETERS), n=1, cutoff=0.6)
    return head + (f" (did you mean '{close[0]}'?)" if close else "")


def _check_number(spec: ParamSpec, value: float) -> None:
    if spec.nan_unset and math.isnan(value):
        return
    if spec.min_value is not None and not value >= spec.min_value:
        raise ParameterError(spec.name, f"must be >= {spec.min_value:g}, got {value}")
    if spec.max_value is not None and not value <= spec.max_value:
        raise ParameterError(spec.name, f"must be <= {spec.max_value:g}, got {value}")


def check_value(spec: ParamSpec, value: Any) -> Any:
    """Check one value against its spec; returns it normalised (ints accepted as floats).

    Raises:
        ParameterError: wrong type, out of range, or not one of the choices.
    """
    kind = spec.kind
    if value is None:
        raise ParameterError(spec.name, "must be set")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParameterError(spec.name, f"expected a bool, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(spec.name, f"expected an integer, got {value!r}")
        _check_number(spec, value)
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(spec.name, f"expected a number, got {value!r}")
        _check_number(spec, float(value))
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ParameterError(spec.name, f"expected a string, got {value!r}")
        if spec.choices and value not in spec.choices:
            raise ParameterError(spec.name, f"must be one of {list(spec.choices)}, got {value!r}")
        return value
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ParameterError(spec.name, f"expected a list, got {value!r}")
    items = list(value)
    want: tuple[type, ...] = {"int_array": (int,), "float_array": (int, float)}.get(kind, (str,))
    if any(isinstance(v, bool) or not isinstance(v, want) for v in items):
        raise ParameterError(spec.name, f"expected a list of {kind[:-6]}, got {items!r}")
    if kind != "str_array":
        for v in items:
            _check_number(spec, float(v))
    return [float(v) for v in items] if kind == "float_array" else items


def _from_param_value(spec: ParamSpec, tp: Any, value: Any) -> Any:
    """Parameter value -> the config field's value (lists -> tuples)."""
    if not spec.kind.endswith("_array"):
        return value
    args = typing.get_args(tp)
    if args and typing.get_origin(args[0]) is tuple:  # "Name: value" pairs
        pairs = []
        for item in value:
            key, sep, val = str(item).partition(":")
            if not sep:
                raise ParameterError(spec.name, f"entries must be 'Name: value', got {item!r}")
            pairs.append((key.strip(), val.strip()))
        return tuple(pairs)
    return tuple(value)


def _build_section(
    cls: type[Any], prefix: str, values: Mapping[str, Any], declared: frozenset[str]
) -> Any:
    """One config from its declared parameters, on top of its preset's internals."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    presets = presets_of(cls)
    if presets is not None and f"{prefix}preset" in declared:
        kwargs.update(presets.values(values[f"{prefix}preset"]))
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if section_meta(f) is not None:
            kwargs[f.name] = _build_section(hints[f.name], f"{name}.", values, declared)
        elif name in declared and name in values:
            kwargs[f.name] = _from_param_value(PARAMETERS[name], hints[f.name], values[name])
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

    Missing names take their defaults; internals take their section's preset (or their
    defaults). Every error names the parameter.

    Args:
        values: parameter values by full dotted name (YAML nesting flattened).

    Raises:
        ParameterError: an unknown name, a wrong type, a value out of range, a value for a
            kind that is not selected, an unknown preset, or a value a component rejects.
    """
    for name in values:
        if name not in PARAMETERS:
            raise ParameterError(name, _unknown(name))
    checked = {name: check_value(PARAMETERS[name], value) for name, value in values.items()}
    check_selected(checked)
    declared = frozenset(declared_names(checked))
    merged: dict[str, Any] = {
        n: checked.get(n, PARAMETERS[n].default) for n in PARAMETERS if n in declared
    }
    localizer = LocalizerConfig(
        lifting=_build_section(LiftingConfig, "lifting.", merged, declared),
        ransac=_build_section(RansacConfig, "ransac.", merged, declared),
        covariance=_build_section(CovarianceConfig, "covariance.", merged, declared),
        gating=_build_section(GatingConfig, "gating.", merged, declared),
        patch_reuse=_build_section(PatchReuseConfig, "patch_reuse.", merged, declared),
        view=_build_section(ViewConfig, "view.", merged, declared),
        height=_build_section(HeightConfig, "height.", merged, declared),
        keep_debug=True,  # references only; the overlay and replay visualisation use it
    )
    tiles = None
    if str(merged.get("tiles.source") or "").strip():
        tiles = _build_section(TileSourceConfig, "tiles.", merged, declared)
    return NodeConfigs(
        node=_build_section(NodeSettings, "", merged, declared),
        localizer=localizer,
        matcher=_build_section(MatcherConfig, "matcher.", merged, declared),
        depth=_build_section(DepthConfig, "depth.", merged, declared),
        tiles=tiles,
        patch=_build_section(PatchConfig, "patch.", merged, declared),
        cache=_build_section(CacheConfig, "cache.", merged, declared),
        prefetch=_build_section(PrefetchConfig, "prefetch.", merged, declared),
        values=merged,
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
    """Keyword arguments of ``rcl_interfaces.msg.ParameterDescriptor`` for a spec (no ranges).

    The description says when the parameter is read, which kind declares it, and the range
    of a parameter whose descriptor cannot carry it (arrays, NaN = not set).
    """
    text = spec.description
    if spec.only_for:
        text += " Declared with " + " and ".join(c.describe() for c in spec.only_for) + "."
    has_range = spec.min_value is not None and spec.max_value is not None
    if has_range and (spec.kind.endswith("_array") or spec.nan_unset):
        text += f" Range [{spec.min_value:g}, {spec.max_value:g}]."
    if not spec.runtime:
        text += " (read at start-up)"
    return {"name": spec.name, "description": text, "read_only": False}


def yaml_float(value: float) -> str:
    """A float as YAML writes it (``0.0``, ``.nan``, ``.inf``), so it reads back as a float."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return repr(float(value))


def _default_text(spec: ParamSpec) -> str:
    if spec.kind == "float":
        return f"`{yaml_float(spec.default)}`"
    if spec.kind == "str" and spec.default == "":
        return '`""`'
    if spec.kind.endswith("_array"):
        return "`[" + ", ".join(str(v) for v in spec.default) + "]`"
    return f"`{str(spec.default).lower() if spec.kind == 'bool' else spec.default}`"


def _range_text(spec: ParamSpec) -> str:
    if spec.choices:
        return ", ".join(spec.choices)
    if spec.min_value is None or spec.max_value is None:
        return ""
    if spec.kind in ("int", "int_array"):
        return f"[{int(spec.min_value)}, {int(spec.max_value)}]"
    return f"[{spec.min_value:g}, {spec.max_value:g}]"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def parameter_count_text() -> str:
    """How many parameters there are, always and per selected kind (README, docs/NODE.md)."""
    always = [s for s in PARAMETERS.values() if not s.only_for]
    return (
        f"{len(PARAMETERS)} parameters: {len(always)} always declared, "
        f"{len(PARAMETERS) - len(always)} only with the kind they belong to "
        f"({len(declared_names({'tiles.source': 'map.tif'}))} with the defaults and a "
        "GeoTIFF map)."
    )


def parameter_table_markdown() -> str:
    """docs/NODE.md's parameter table, generated from the config markers.

    ``cvgl-ros params --markdown`` prints it; ``test/static/test_generated_docs.py`` fails
    when docs/NODE.md holds another version.
    """
    rows = [
        parameter_count_text(),
        "",
        "| parameter | type | default | range / choices | run time | declared with | "
        "description |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in PARAMETERS.values():
        only = " and ".join(c.describe() for c in spec.only_for) or "always"
        rows.append(
            f"| `{spec.name}` | {spec.kind} | {_default_text(spec)} | {_range_text(spec)} | "
            f"{'yes' if spec.runtime else ''} | {_cell(only)} | {_cell(spec.description)} |"
        )
    rows += ["", "Presets (`default` is the field defaults; the others change only these):", ""]
    rows += ["| parameter | preset | internals |", "|---|---|---|"]
    for name, presets in PRESETS.items():
        changed = list(dict.fromkeys(k for p in presets.names for k in presets.values(p)))
        defaults = presets.defaults(changed)
        for preset in presets.names:
            values = presets.values(preset) if preset != "default" else defaults
            text = ", ".join(f"`{k}: {v}`" for k, v in values.items())
            rows.append(f"| `{name}` | `{preset}` | {text} |")
    return "\n".join(rows)


def parameter_list_markdown() -> str:
    """The README's compact list: parameter names by section and by the kind declaring them."""
    groups: dict[tuple[str, str], list[str]] = {}
    for spec in PARAMETERS.values():
        section = spec.name.rsplit(".", 1)[0] + "." if "." in spec.name else ""
        only = " and ".join(c.describe() for c in spec.only_for) or "always"
        groups.setdefault((section, only), []).append(spec.name[len(section) :])
    rows = [
        parameter_count_text(),
        "",
        "| section | parameters | declared with |",
        "|---|---|---|",
    ]
    for (section, only), names in groups.items():
        rows.append(f"| `{section or '(none)'}` | {', '.join(names)} | {_cell(only)} |")
    return "\n".join(rows)


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
