"""``cvgl_node``: the rclpy node around :class:`~cvgl_ros.ros.pipeline.Pipeline`.

Subscriptions only store messages (the newest image waits in a one-slot buffer; an image that
replaces a waiting one is counted as dropped); one worker thread localizes the newest image and
publishes. No geometry lives here.

Topics (fixed input names, relative to the namespace: remap them, e.g.
``--ros-args -r camera/image_raw:=/cam/image``):

- in: ``camera/image_raw`` (``sensor_msgs/Image``, or ``camera/image_raw/compressed`` with
  ``image_transport: compressed``; keep-last 5, reliability per ``image_qos``: by default
  reliable while every publisher offers it, else best effort), ``camera/camera_info``,
  ``gnss/fix`` (or gpsd), ``imu/data`` (with ``use_imu``); sensor-data QoS.
- out: ``~/pose`` (``geometry_msgs/PoseWithCovarianceStamped``: ``base_frame``'s pose in
  ``map_frame``, stamped with the image stamp), ``~/fix`` (``sensor_msgs/NavSatFix`` of
  ``base_frame``), ``/diagnostics``, ``~/debug/overlay`` (with ``publish_overlay``).

With ``extrinsics_source: tf`` the camera's pose on the robot comes from TF (``tf2_ros``, looked
up per image: ``base_frame`` <- ``camera_frame`` or the image's frame).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix

try:  # Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble: the same class lives in rclpy.qos_event
    from rclpy.qos_event import SubscriptionEventCallbacks  # type: ignore[no-redef, unused-ignore]
from cvgl_ros.ros import constants as const
from cvgl_ros.ros import convert, diagnostics
from cvgl_ros.ros.errors import ParameterError
from cvgl_ros.ros.params import (
    PARAMETERS,
    NodeConfigs,
    ParamSpec,
    check_value,
    configs_from_params,
    declared_names,
    descriptor_fields,
)
from cvgl_ros.ros.pipeline import FrameResult, Pipeline

_PARAM_TYPES: dict[str, Parameter.Type] = {
    "bool": Parameter.Type.BOOL,
    "int": Parameter.Type.INTEGER,
    "float": Parameter.Type.DOUBLE,
    "str": Parameter.Type.STRING,
    "int_array": Parameter.Type.INTEGER_ARRAY,
    "float_array": Parameter.Type.DOUBLE_ARRAY,
    "str_array": Parameter.Type.STRING_ARRAY,
}
# How often ``image_qos: auto`` looks at the image publishers' QoS, seconds (a query of the
# local discovery cache).
_QOS_POLL_S = 0.25
# Images queued between executor turns: the callback only moves the newest into the worker's
# one-slot buffer, counting what it replaces (``images_dropped``); a DDS queue of one would
# drop the same frames silently.
_IMAGE_QUEUE_DEPTH = 5
# IMU messages queued between executor turns: the pipeline buffers them for interpolation, so
# dropping some in a burst would open gaps.
_IMU_QUEUE_DEPTH = 50


class StartupError(RuntimeError):
    """The node cannot start (bad parameters, missing weights, unreadable map)."""


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    fields = descriptor_fields(spec)
    desc = ParameterDescriptor(
        name=fields["name"],
        type=_PARAM_TYPES[spec.kind].value,
        description=fields["description"],
        read_only=False,
    )
    if spec.choices:
        desc.additional_constraints = f"one of: {', '.join(spec.choices)}"
    if spec.min_value is not None and spec.max_value is not None:
        if spec.kind == "float" and not spec.nan_unset:  # rclpy would refuse NaN
            desc.floating_point_range = [
                FloatingPointRange(
                    from_value=float(spec.min_value), to_value=float(spec.max_value), step=0.0
                )
            ]
        elif spec.kind == "int":
            desc.integer_range = [
                IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value), step=0)
            ]
    return desc


def _reliability_name(reliability: ReliabilityPolicy) -> str:
    return "reliable" if reliability == ReliabilityPolicy.RELIABLE else "best_effort"


class CvglNode(Node):
    """The cross-view geo-localization node.

    Args:
        node_name: node name (parameter files key their entries by it).
        components: ``matcher``/``depth``/``patches`` objects to use instead of building them
            from parameters (tests, tools).
        **kwargs: passed to :class:`rclpy.node.Node` (``context``, ``parameter_overrides``,
            ``cli_args``, ``namespace``).

    Raises:
        StartupError: undeclared or invalid parameters, or a component that cannot start.
    """

    def __init__(
        self,
        node_name: str = const.NODE_NAME,
        *,
        components: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(node_name, **kwargs)
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._pending: Any = None
        self._dropped = 0
        self._published = 0
        self._publish_errors = 0
        self._last_pose_wall_s = -math.inf
        self._last_image_wall_s = -math.inf
        self._start_wall_s = time.monotonic()
        self._rate_prev: tuple[float, int, int, int] | None = None
        self._worker: threading.Thread | None = None
        self._gpsd: Any = None
        # True on rclpy without post-set parameter callbacks (Humble): see set_parameters.
        self._emulate_post_set = False

        self._image_topic = ""
        self._declared: frozenset[str] = frozenset()
        self._image_cls: Any = Image
        self._image_sub: Any = None
        self._image_reliability = ReliabilityPolicy.BEST_EFFORT
        self._image_qos_incompatible = 0
        try:
            self._setup(components)
        except BaseException:
            self._stop.set()
            if self._gpsd is not None:
                self._gpsd.stop()
            self._close_patch_source()
            super().destroy_node()
            raise

    def _setup(self, components: Mapping[str, Any] | None) -> None:
        configs = self._declare_and_validate()
        try:
            self._pipeline = Pipeline.from_configs(
                configs, logger=self.get_logger(), **dict(components or {})
            )
        except ParameterError as exc:
            raise StartupError(str(exc)) from exc
        except Exception as exc:
            raise StartupError(f"cannot build the localizer: {type(exc).__name__}: {exc}") from exc
        self._make_io(configs)
        if configs.node.extrinsics_source == "tf":
            self._pipeline.set_extrinsics_provider(
                TfCameraExtrinsics(self, configs.node.base_frame, configs.node.camera_frame)
            )
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Iron+ calls post-set callbacks once the values are stored. Humble has none: there the
        # node's set_parameters / set_parameters_atomically (which the parameter services call)
        # apply the stored values after a successful set.
        add_post_set = getattr(self, "add_post_set_parameters_callback", None)
        if callable(add_post_set):
            add_post_set(self._after_set_parameters)
        else:
            self._emulate_post_set = True
        self._worker = threading.Thread(target=self._work, name="cvgl-localize", daemon=True)
        self._worker.start()
        s = configs.node
        gnss = (
            f"gpsd {s.gpsd_host}:{s.gpsd_port}"
            if s.gnss_source == "gpsd"
            else f"'{self.resolve_topic_name(const.FIX_TOPIC)}'"
        )
        source = configs.tiles.source if configs.tiles is not None else "(injected)"
        self.get_logger().info(
            f"ready: images on '{self._image_topic}', GNSS from {gnss}, map '{source}', "
            f"matcher {configs.matcher.kind}, depth {configs.depth.kind}"
        )

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline the node feeds (for tools and tests: stats, configs)."""
        return self._pipeline

    # ------------------------------------------------------------------ parameters

    def _declare_and_validate(self) -> NodeConfigs:
        """Declare the parameters of the selected kinds, then validate them into configs.

        Overrides for undeclared names (typos) or for a kind that is not selected stop the
        start-up with the parameter's name.
        """
        overrides: dict[str, Parameter[Any]] = getattr(self, "_parameter_overrides", {})
        builtin = set(self._parameters)  # use_sim_time etc., declared by rclpy itself
        ours = {
            n: p
            for n, p in overrides.items()
            if n not in builtin and not n.startswith("qos_overrides.")
        }
        unknown = sorted(n for n in ours if n not in PARAMETERS)
        if unknown:
            hints = []
            for name in unknown:
                try:
                    configs_from_params({name: ours[name].value})
                except ParameterError as exc:
                    hints.append(str(exc))
            raise StartupError("undeclared parameter(s) rejected: " + "; ".join(hints))
        # YAML writes 5 for 5.0: accept integers for double parameters instead of failing.
        for name, param in ours.items():
            spec = PARAMETERS[name]
            value = param.value
            if spec.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
                overrides[name] = Parameter(name, value=float(value))
            elif spec.kind == "float_array" and isinstance(value, list | tuple):
                overrides[name] = Parameter(name, value=[float(v) for v in value])
        values = {name: overrides[name].value for name in ours}
        try:
            configs_from_params(values)  # types, ranges, kinds, presets: before declaring
            self._declared = frozenset(declared_names(values))
        except ParameterError as exc:
            raise StartupError(str(exc)) from exc
        declarations = []
        for spec in PARAMETERS.values():
            if spec.name not in self._declared:
                continue
            default = spec.default
            if spec.kind.endswith("_array") and not default:
                default = _PARAM_TYPES[spec.kind]  # typed, without a value
            declarations.append((spec.name, default, _descriptor(spec)))
        try:
            self.declare_parameters("", declarations)
        except Exception as exc:  # wrong type or out-of-range value in the parameter file
            raise StartupError(f"invalid parameter: {type(exc).__name__}: {exc}") from exc
        try:
            return configs_from_params(self._current_values())
        except ParameterError as exc:
            raise StartupError(str(exc)) from exc

    def _current_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self._declared:
            param = self._parameters.get(name)
            value = None if param is None else param.value
            if value is None:
                continue
            values[name] = list(value) if PARAMETERS[name].kind.endswith("_array") else value
        return values

    def _on_set_parameters(self, params: Sequence[Parameter[Any]]) -> SetParametersResult:
        values = self._current_values()
        for p in params:
            spec = PARAMETERS.get(p.name) if p.name in self._declared else None
            if spec is None:
                if p.name in ("use_sim_time",) or p.name.startswith("qos_overrides."):
                    continue
                return SetParametersResult(successful=False, reason=f"unknown parameter {p.name}")
            if not spec.runtime:
                return SetParametersResult(
                    successful=False,
                    reason=f"{p.name} is read at start-up; restart the node to change it",
                )
            try:
                value = p.value
                if spec.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                values[p.name] = check_value(spec, value)
            except ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        try:
            configs_from_params(values)
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params: Sequence[Parameter[Any]]) -> None:
        """Apply the stored parameter values (called once a set succeeded)."""
        names = [p.name for p in params if p.name in self._declared]
        if not names or not hasattr(self, "_pipeline"):
            return  # use_sim_time, QoS overrides, or a set during construction
        try:
            configs = configs_from_params(self._current_values())
        except ParameterError as exc:  # _on_set_parameters accepted them: should not happen
            self.get_logger().error(f"parameters {', '.join(names)} set but not applied: {exc}")
            return
        self._pipeline.update_configs(configs)
        self.get_logger().info(f"parameters updated: {', '.join(names)}")

    def set_parameters(self, parameter_list: list[Parameter[Any]]) -> list[SetParametersResult]:
        """:meth:`rclpy.node.Node.set_parameters`, applying successful sets on Humble too."""
        results: list[SetParametersResult] = super().set_parameters(parameter_list)
        if getattr(self, "_emulate_post_set", False):
            done = [p for p, r in zip(parameter_list, results, strict=False) if r.successful]
            if done:
                self._after_set_parameters(done)
        return results

    def set_parameters_atomically(
        self, parameter_list: list[Parameter[Any]]
    ) -> SetParametersResult:
        """:meth:`rclpy.node.Node.set_parameters_atomically`, applying on Humble too."""
        result: SetParametersResult = super().set_parameters_atomically(parameter_list)
        if getattr(self, "_emulate_post_set", False) and result.successful:
            self._after_set_parameters(parameter_list)
        return result

    # ------------------------------------------------------------------ topics

    def _make_io(self, configs: NodeConfigs) -> None:
        s = configs.node
        sensor_qos = qos_profile_sensor_data
        self._image_topic = self.resolve_topic_name(const.IMAGE_TOPIC)
        if s.image_transport == "compressed":
            self._image_topic += const.COMPRESSED_SUFFIX
            self._image_cls = CompressedImage
        # auto starts best effort (matches any publisher, visible to introspection at once)
        # and follows the publishers from then on.
        self._subscribe_image(
            ReliabilityPolicy.RELIABLE
            if s.image_qos == "reliable"
            else ReliabilityPolicy.BEST_EFFORT
        )
        if s.image_qos == "auto":
            self.create_timer(_QOS_POLL_S, self._follow_publisher_qos)
        if s.camera_model == "pinhole":
            self.create_subscription(
                CameraInfo, const.CAMERA_INFO_TOPIC, self._on_camera_info, sensor_qos
            )
        if s.gnss_source == "topic":
            self.create_subscription(NavSatFix, const.FIX_TOPIC, self._on_fix, sensor_qos)
        else:
            self._start_gpsd(configs)
        if s.use_imu:
            imu_qos = QoSProfile(
                depth=_IMU_QUEUE_DEPTH,
                history=HistoryPolicy.KEEP_LAST,
                reliability=ReliabilityPolicy.BEST_EFFORT,
                durability=DurabilityPolicy.VOLATILE,
            )
            self.create_subscription(Imu, const.IMU_TOPIC, self._on_imu, imu_qos)
        out_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._pose_pub = self.create_publisher(
            PoseWithCovarianceStamped, const.POSE_TOPIC, out_qos
        )
        self._fix_pub = self.create_publisher(NavSatFix, const.FIX_OUT_TOPIC, out_qos)
        self._diag_pub = self.create_publisher(DiagnosticArray, const.DIAGNOSTICS_TOPIC, out_qos)
        self._overlay_pub = self.create_publisher(Image, const.OVERLAY_TOPIC, out_qos)
        self._diag_timer = self.create_timer(
            1.0 / s.diagnostics_rate_hz, self._publish_diagnostics
        )

    @property
    def image_reliability(self) -> ReliabilityPolicy:
        """Reliability of the current image subscription."""
        return self._image_reliability

    def _subscribe_image(self, reliability: ReliabilityPolicy) -> None:
        """(Re-)create the image subscription with ``reliability`` (keep last 5, volatile).

        The new subscription exists before the old one goes, and both callbacks run on the
        executor thread that runs this, so no callback overlaps; images in flight during the
        switch (a one-off when the first publisher is discovered) may be lost.
        """
        qos = QoSProfile(
            depth=_IMAGE_QUEUE_DEPTH,
            history=HistoryPolicy.KEEP_LAST,
            reliability=reliability,
            durability=DurabilityPolicy.VOLATILE,
        )
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_image_qos_incompatible)
        old, self._image_sub = (
            self._image_sub,
            self.create_subscription(
                self._image_cls, self._image_topic, self._on_image, qos, event_callbacks=events
            ),
        )
        if old is not None:
            self.destroy_subscription(old)
        self._image_reliability = reliability
        self.get_logger().info(
            f"image subscription on '{self._image_topic}': {_reliability_name(reliability)}"
        )

    def _follow_publisher_qos(self) -> None:
        """``image_qos: auto``: reliable when every image publisher offers reliable.

        A reliable subscription lets a reliable publisher resend the lost fragments of a
        large image, but it does not match a best-effort publisher at all; so the choice
        follows the publishers actually on the topic.
        """
        infos = self.get_publishers_info_by_topic(self._image_topic)
        if not infos:
            return  # keep the current subscription: a publisher may come back
        offered = {info.qos_profile.reliability for info in infos}
        wanted = (
            ReliabilityPolicy.RELIABLE
            if offered == {ReliabilityPolicy.RELIABLE}
            else ReliabilityPolicy.BEST_EFFORT
        )
        if wanted != self._image_reliability:
            self._subscribe_image(wanted)

    def _on_image_qos_incompatible(self, info: Any) -> None:
        self._image_qos_incompatible += 1
        if self._image_qos_incompatible == 1:
            self.get_logger().warning(
                f"an image publisher on '{self._image_topic}' is incompatible with this "
                f"node's {_reliability_name(self._image_reliability)} subscription (policy "
                f"{getattr(info, 'last_policy_kind', '?')}): no image arrives from it; use "
                "image_qos: auto or best_effort for best-effort publishers"
            )

    def _start_gpsd(self, configs: NodeConfigs) -> None:
        from cvgl_ros.ros.gpsd_source import GpsdConfig, GpsdSource

        s = configs.node
        cfg = GpsdConfig(
            host=s.gpsd_host,
            port=s.gpsd_port,
            poll_rate_hz=s.gpsd_poll_rate_hz,
            reconnect_max_s=s.gpsd_reconnect_max_s,
            timeout_s=s.gpsd_timeout_s,
            default_sigma_m=s.fix_default_sigma_m,
            min_sigma_m=s.fix_min_sigma_m,
        )
        self._gpsd = GpsdSource(
            cfg,
            self._pipeline.on_gnss_prior,
            clock_s=lambda: self.get_clock().now().nanoseconds * 1e-9,
            logger=self.get_logger(),
        )
        try:
            self._gpsd.start()
        except ImportError as exc:
            raise StartupError(str(exc)) from exc

    def _on_camera_info(self, msg: Any) -> None:
        self._pipeline.on_camera_info(msg)

    def _on_fix(self, msg: Any) -> None:
        self._pipeline.on_fix(msg)

    def _on_imu(self, msg: Any) -> None:
        self._pipeline.on_imu(msg)

    def _on_image(self, msg: Any) -> None:
        with self._cond:
            if self._pending is not None:
                self._dropped += 1  # the worker is busy: keep only the newest frame
            self._pending = msg
            self._last_image_wall_s = time.monotonic()
            self._cond.notify()

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while self._pending is None and not self._stop.is_set():
                    self._cond.wait(0.5)
                msg, self._pending = self._pending, None
            if msg is None:
                continue
            try:
                result = self._pipeline.process_image(msg)
                self._publish(result)
            except Exception as exc:  # one frame must never take the node down
                self.get_logger().error(f"frame failed: {type(exc).__name__}: {exc}")

    def _publish(self, result: FrameResult) -> None:
        est = result.estimate
        s = self._pipeline.configs.node
        if est.ok:
            try:
                pose = convert.build_pose_msg(est, s.map_frame, result.stamp)
                fix = convert.build_fix_msg(
                    est,
                    s.fix_frame_id or s.base_frame,
                    result.fix_altitude_m,
                    result.stamp,
                    altitude_var_m2=result.fix_altitude_var_m2,
                    service=result.fix_service,
                )
            except ValueError as exc:
                self._publish_errors += 1
                self.get_logger().error(f"not publishing an OK pose: {exc}")
            else:
                if not self.context.ok():
                    return
                self._pose_pub.publish(pose)
                self._fix_pub.publish(fix)
                self._published += 1
                self._last_pose_wall_s = time.monotonic()
        if s.publish_overlay and self.context.ok():
            from cvgl_ros.ros.overlay import render_overlay

            picture = render_overlay(est, result.image, result.prior)
            if picture is not None:
                self._overlay_pub.publish(
                    convert.build_image_msg(picture, est.stamp_s, s.map_frame, result.stamp)
                )

    # ------------------------------------------------------------------ diagnostics

    def diagnostics_reports(self) -> list[convert.DiagnosticReport]:
        """The current diagnostic statuses (localization, GNSS, tiles)."""
        snap = self._pipeline.stats_snapshot()
        s = self._pipeline.configs.node
        now = time.monotonic()
        with self._cond:
            dropped = self._dropped
        images, ok, fixes = snap["images_in"], snap["poses_ok"], snap["fixes_in"]
        rates = {"image_rate_hz": math.nan, "pose_rate_hz": math.nan, "fix_rate_hz": math.nan}
        if self._rate_prev is not None:
            t_prev, im_prev, ok_prev, fx_prev = self._rate_prev
            dt = max(now - t_prev, 1e-6)
            rates = {
                "image_rate_hz": (images + dropped - im_prev) / dt,
                "pose_rate_hz": (ok - ok_prev) / dt,
                "fix_rate_hz": (fixes - fx_prev) / dt,
            }
        self._rate_prev = (now, images + dropped, ok, fixes)

        since_pose_s = now - self._last_pose_wall_s
        since_image_s = now - self._last_image_wall_s
        last_failure = snap["last_failure"]
        last_status = snap["last_status"]
        attitude = snap["last_attitude_source"]
        level, message = diagnostics.localization_status(
            since_image_s=since_image_s,
            since_pose_s=since_pose_s,
            last_status=last_status,
            last_failure=last_failure,
            poses_ok=ok,
            no_pose_warn_s=s.no_pose_warn_s,
            image_topic=self._image_topic,
            image_qos_incompatible=self._image_qos_incompatible,
            last_attitude_source=attitude,
        )

        values: dict[str, object] = {
            "images_in": images,
            "images_dropped": dropped,
            "poses_published": self._published,
            "publish_errors": self._publish_errors,
            **rates,
            "seconds_since_pose": since_pose_s if math.isfinite(since_pose_s) else -1.0,
            "last_status": last_status or "none",
            "last_failure_status": snap["last_failure_status"] or "none",
            "last_failure": last_failure or "none",
            "inliers_mean": snap["inliers_mean"],
            "inlier_ratio_mean": snap["inlier_ratio_mean"],
            "camera_info_received": self._pipeline.has_camera,
            "image_qos": _reliability_name(self._image_reliability),
            "image_qos_incompatible": self._image_qos_incompatible,
            "images_out_of_order": snap["images_out_of_order"],
            "last_attitude_source": attitude or "none",
            "ransac_implementation": snap["ransac_implementation"],
            "uptime_s": now - self._start_wall_s,
        }
        for stage, mean_s in sorted(snap["latency_mean_s"].items()):
            values[f"latency_{stage}_ms"] = 1e3 * mean_s
            values[f"latency_{stage}_max_ms"] = 1e3 * snap["latency_max_s"][stage]
        for status, count in sorted(snap["failures"].items()):
            values[f"failures.{status}"] = count
        for reason, count in sorted(snap["skipped"].items()):
            values[f"skipped.{reason}"] = count
        for reason, count in sorted(snap["attitude_fallbacks"].items()):
            values[f"imu_fallback.{reason}"] = count
        origin = self._pipeline.localizer.map_origin
        if origin is not None:
            values["map_origin"] = f"{origin.origin_lat_deg:.7f},{origin.origin_lon_deg:.7f}"
        name = self.get_fully_qualified_name()
        reports = [convert.DiagnosticReport(f"{name}: localization", level, message, values)]

        gnss_values: dict[str, object] = {
            "source": s.gnss_source,
            "fixes_in": fixes,
            "fixes_used": snap["fixes_used"],
            "fix_rate_hz": rates["fix_rate_hz"],
        }
        latest = self._pipeline.latest_fix
        if latest is not None:
            gnss_values["latest_lat_deg"] = f"{latest.lat_deg:.7f}"
            gnss_values["latest_lon_deg"] = f"{latest.lon_deg:.7f}"
            gnss_values["latest_sigma_m"] = math.sqrt(float(max(latest.cov_en_m2.trace(), 0.0)))
        if self._gpsd is not None:
            for k, v in self._gpsd.stats().items():
                gnss_values[f"gpsd.{k}"] = v
        gnss_level, gnss_msg = diagnostics.gnss_status(
            has_fix=latest is not None,
            gpsd_connected=None if self._gpsd is None else bool(self._gpsd.connected),
        )
        for reason, count in sorted(snap["skipped"].items()):
            if reason.startswith("fix:"):
                gnss_values[f"rejected.{reason[4:]}"] = count
        reports.append(
            convert.DiagnosticReport(f"{name}: gnss", gnss_level, gnss_msg, gnss_values)
        )

        tiles = snap.get("tiles", {})
        tile_level, tile_msg = diagnostics.tiles_status(
            tile_stats=tiles,
            last_failure_status=snap["last_failure_status"],
            last_status=last_status,
            last_failure=last_failure,
        )
        reports.append(
            convert.DiagnosticReport(
                f"{name}: tiles", tile_level, tile_msg, {f"tiles.{k}": v for k, v in tiles.items()}
            )
        )
        return reports

    def _publish_diagnostics(self) -> None:
        try:
            stamp_s = self.get_clock().now().nanoseconds * 1e-9
            self._diag_pub.publish(
                convert.build_diagnostic_array(stamp_s, self.diagnostics_reports())
            )
        except Exception as exc:  # diagnostics must never take the node down
            self.get_logger().error(f"diagnostics failed: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ shutdown

    def destroy_node(self) -> None:
        """Stop the worker and the gpsd poller, then destroy the node."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
        if self._gpsd is not None:
            self._gpsd.stop()
        self._close_patch_source()
        super().destroy_node()

    def _close_patch_source(self) -> None:
        source = getattr(getattr(self, "_pipeline", None), "patch_source", None)
        close = getattr(source, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:  # closing must not mask the shutdown
                self.get_logger().warning(f"closing the patch source failed: {exc}")


class TfCameraExtrinsics:
    """The camera extrinsics from TF: ``base_frame`` <- camera frame, looked up per image.

    Uses ``tf2_ros`` (a ROS 2 install's ``ros-<distro>-tf2-ros-py``; not on PyPI): a
    ``Buffer`` filled by a ``TransformListener`` on the node (``/tf`` and ``/tf_static``), and
    ``Buffer.lookup_transform(target, source, Time())`` (the latest transform: a static or
    slowly moving mount).

    Args:
        node: the node the listener subscribes with.
        base_frame: the robot's body frame (target of the lookup).
        camera_frame: the camera's optical frame; empty = each image's ``header.frame_id``.

    Raises:
        StartupError: tf2_ros is not importable.
    """

    def __init__(self, node: Node, base_frame: str, camera_frame: str = "") -> None:
        try:
            import tf2_ros
        except ImportError as exc:
            raise StartupError(
                "extrinsics_source 'tf' needs tf2_ros (apt install ros-$ROS_DISTRO-tf2-ros-py, "
                f"then source the ROS setup): {exc}; or set extrinsics_source: parameters"
            ) from exc
        self._base_frame = base_frame
        self._camera_frame = camera_frame
        self._buffer = tf2_ros.Buffer()
        self._listener = tf2_ros.TransformListener(self._buffer, node)
        self._tf_error: type[BaseException] = tf2_ros.TransformException

    def __call__(self, frame_id: str) -> Any:
        """:class:`~cvgl_ros.core.extrinsics.CameraExtrinsics` of the camera of an image.

        Raises:
            LookupError: no frame to look up, or TF has no such transform (yet).
        """
        source = self._camera_frame or frame_id
        if not source:
            raise LookupError(
                "the image has no header.frame_id to look up in TF: set camera_frame"
            )
        try:
            transform = self._buffer.lookup_transform(self._base_frame, source, Time())
        except self._tf_error as exc:
            raise LookupError(
                f"no TF transform {self._base_frame} <- {source}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            return convert.extrinsics_from_transform(transform)
        except ValueError as exc:
            raise LookupError(f"TF transform {self._base_frame} <- {source}: {exc}") from exc


def main(args: Sequence[str] | None = None) -> int:
    """Console entry point ``cvgl_node`` (``ros2 run cvgl_ros cvgl_node``).

    Returns:
        Process exit code: 0 on a clean shutdown, 1 when the node could not start.
    """
    try:
        rclpy.init(args=list(args) if args is not None else None)
    except Exception as exc:  # RCLError: unparseable --ros-args or parameter file
        detail = " ".join(str(exc).split("\n")[0].split())
        rclpy.logging.get_logger(const.NODE_NAME).fatal(f"cannot start: {detail}")
        return 1
    node: CvglNode | None = None
    try:
        # The executor exists before the node logs "ready": a Ctrl-C right after that must not
        # interrupt the executor's construction (its half-built guard conditions would then
        # print tracebacks at exit).
        executor = SingleThreadedExecutor()
        node = CvglNode()
        executor.add_node(node)
        executor.spin()
    except StartupError as exc:
        rclpy.logging.get_logger(const.NODE_NAME).fatal(f"cannot start: {exc}")
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
