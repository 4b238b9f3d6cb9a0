"""The localization pipeline behind the node, without rclpy.

:class:`Pipeline` holds the :class:`~cvgl_ros.core.localizer.Localizer`, the latest camera
model, a buffer of GNSS fixes and the latest IMU attitude, and turns ROS-message-shaped inputs
(rclpy messages, rosbags-deserialised messages or test doubles) into
:class:`~cvgl_ros.core.types.PoseEstimate` results. The node feeds it from its callbacks and
worker thread; ``cvgl-ros replay`` feeds it straight from a bag, so both give the same poses.

Thread safety: ``on_camera_info``, ``on_fix``, ``on_imu`` and ``on_gnss_prior`` may be called
from any thread while one thread calls ``on_image``; shared state is guarded by one lock that
is never held while localizing.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cvgl_ros.core.attitude import ImuBuffer, ImuSample, yaw_from_quaternion_xyzw
from cvgl_ros.core.errors import AttitudeUnavailableError, PriorUnavailableError
from cvgl_ros.core.extrinsics import (
    CameraExtrinsics,
    base_estimate_from_camera_estimate,
    horizontal_lever_arm_m,
)
from cvgl_ros.core.gnss import FixBuffer
from cvgl_ros.core.ransac import describe_implementation, warm_up_in_background
from cvgl_ros.core.stamped import jumped_back
from cvgl_ros.core.types import FloatArray, GnssPrior, PoseEstimate, PoseStatus, UInt8Array
from cvgl_ros.ros import constants as const
from cvgl_ros.ros import convert
from cvgl_ros.ros.errors import MessageConversionError
from cvgl_ros.ros.params import NodeConfigs, configs_from_params, merged_values

_LATENCY_WINDOW = 50
# Exact stamps of recent decoded images kept to recognise duplicates.
_RECENT_STAMPS = 256


class _Logger(Protocol):
    def info(self, msg: str) -> Any: ...
    def warning(self, msg: str) -> Any: ...
    def error(self, msg: str) -> Any: ...


# --------------------------------------------------------------------------- statistics


@dataclass
class PipelineStats:
    """Counters and recent measurements for diagnostics (mutated under the pipeline lock).

    Attributes:
        images_in: images handed to :meth:`Pipeline.on_image`.
        poses_ok: images that produced a publishable pose.
        fixes_in: GNSS fixes received.
        fixes_used: fixes accepted into the buffer.
        camera_infos_in: CameraInfo messages received.
        imu_in: IMU messages received.
        images_out_of_order: images whose stamp is older than an earlier image's (localized
            all the same: prior, IMU and patch are looked up at the image's own stamp).
        skipped: counts of skipped inputs by reason (``image:unsupported_encoding``,
            ``image:duplicate_stamp``, ``fix:nan_fix``, ``camera_info:size_mismatch``, ...).
        attitude_fallbacks: frames that expected an IMU orientation (``use_imu``) and used
            the static mount with ``static_attitude_sigma_rad`` instead, by reason
            (``no_imu``, ``not_bracketed``, ``gap``).
        last_attitude_source: ``imu``, ``static_mount`` (``use_imu`` off) or
            ``static_mount:<reason>`` for the latest localized frame.
        failures: counts of non-OK results by status value.
        last_failure: reason text of the latest non-OK result.
        last_failure_status: status value of the latest non-OK result.
        last_status: status value of the latest result.
        latencies_s: recent per-stage timings (``decode``, the core's stages, ``total``).
        inliers: recent inlier counts of OK poses.
        inlier_ratios: recent inlier ratios of OK poses.
    """

    images_in: int = 0
    poses_ok: int = 0
    fixes_in: int = 0
    fixes_used: int = 0
    camera_infos_in: int = 0
    imu_in: int = 0
    images_out_of_order: int = 0
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    attitude_fallbacks: collections.Counter[str] = field(default_factory=collections.Counter)
    last_attitude_source: str = ""
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    last_failure: str = ""
    last_failure_status: str = ""
    last_status: str = ""
    latencies_s: dict[str, collections.deque[float]] = field(default_factory=dict)
    inliers: collections.deque[int] = field(
        default_factory=lambda: collections.deque(maxlen=_LATENCY_WINDOW)
    )
    inlier_ratios: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_LATENCY_WINDOW)
    )

    def add_latency(self, stage: str, seconds: float) -> None:
        """Record one stage time."""
        if not math.isfinite(seconds):
            return
        window = self.latencies_s.setdefault(stage, collections.deque(maxlen=_LATENCY_WINDOW))
        window.append(float(seconds))

    def snapshot(self) -> dict[str, Any]:
        """A plain copy, safe to read outside the lock."""
        return {
            "images_in": self.images_in,
            "poses_ok": self.poses_ok,
            "fixes_in": self.fixes_in,
            "fixes_used": self.fixes_used,
            "camera_infos_in": self.camera_infos_in,
            "imu_in": self.imu_in,
            "images_out_of_order": self.images_out_of_order,
            "skipped": dict(self.skipped),
            "attitude_fallbacks": dict(self.attitude_fallbacks),
            "last_attitude_source": self.last_attitude_source,
            "failures": dict(self.failures),
            "last_failure": self.last_failure,
            "last_failure_status": self.last_failure_status,
            "last_status": self.last_status,
            "latency_mean_s": {k: float(np.mean(v)) for k, v in self.latencies_s.items() if v},
            "latency_max_s": {k: float(np.max(v)) for k, v in self.latencies_s.items() if v},
            "inliers_mean": float(np.mean(self.inliers)) if self.inliers else math.nan,
            "inlier_ratio_mean": (
                float(np.mean(self.inlier_ratios)) if self.inlier_ratios else math.nan
            ),
        }


@dataclass(frozen=True)
class FrameResult:
    """What one image produced.

    Attributes:
        estimate: the core's result (``status`` OK or a failure with reasons).
        prior: the GNSS prior used (None when there was none).
        frame_id: the image's ``header.frame_id``.
        image: (H, W, 3) uint8 RGB decoded image (None when decoding failed).
        stamp: the image's exact header stamp (sec, nanosec), for the published messages.
        fix_altitude_m: WGS84 ellipsoidal altitude ``~/fix`` reports (the prior's, else
            ``fix_default_altitude_m``), metres.
        fix_altitude_var_m2: its variance, m^2 (large when it is the default).
        fix_service: ``NavSatStatus.service`` of the input fixes (0 = unknown: GPS).
    """

    estimate: PoseEstimate
    prior: GnssPrior | None
    frame_id: str
    image: UInt8Array | None = None
    stamp: tuple[int, int] | None = None
    fix_altitude_m: float = 0.0
    fix_altitude_var_m2: float = const.UNOBSERVED_VARIANCE
    fix_service: int = 0

    def fix_fields(self) -> convert.NavSatFixFields:
        """The ``~/fix`` content of an OK result (see :func:`convert.navsat_fix_fields`).

        Raises:
            ValueError: the estimate is not OK or not publishable.
        """
        return convert.navsat_fix_fields(
            self.estimate, self.fix_altitude_m, self.fix_altitude_var_m2, self.fix_service
        )


def failure(status: PoseStatus, reason: str, stamp_s: float) -> PoseEstimate:
    """A non-OK estimate with one reason."""
    return PoseEstimate(status=status, reasons=(reason,), stamp_s=stamp_s)


# --------------------------------------------------------------------------- pipeline


class Pipeline:
    """Messages in, pose estimates out; the node's and the replay tool's common engine.

    The localizer estimates the camera's pose; every estimate leaves the pipeline as the pose
    of ``base_link`` (:mod:`cvgl_ros.core.extrinsics`), with the camera extrinsics from the
    ``camera_*`` parameters or from an extrinsics provider (the node's TF lookup).

    Args:
        configs: validated configuration (see :func:`~cvgl_ros.ros.params.configs_from_params`).
        localizer: the core localizer (built from ``configs`` by :meth:`from_configs`).
        logger: where to log (the node passes its rclpy logger); ``logging`` by default.
    """

    def __init__(
        self, configs: NodeConfigs, localizer: Any, logger: _Logger | None = None
    ) -> None:
        self._configs = configs
        self._localizer = localizer
        self._log: _Logger = logger or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._fixes = FixBuffer(configs.node.fix_buffer_size)
        self._camera: Any = None
        self._imu = ImuBuffer(configs.node.imu_buffer_size)
        self._recent_stamps: collections.deque[tuple[int, int]] = collections.deque()
        self._recent_set: set[tuple[int, int]] = set()
        self._newest_stamp_s = -math.inf
        self.stats = PipelineStats()
        s = configs.node
        self._extrinsics = CameraExtrinsics.for_mount(
            s.camera_mount,
            s.camera_roll_rad,
            s.camera_pitch_rad,
            s.camera_yaw_rad,
            (s.camera_x_m, s.camera_y_m, s.camera_z_m),
        )
        self._extrinsics_provider: Callable[[str], CameraExtrinsics] | None = None
        self._fix_service = 0
        self._origin_logged = False
        self._warned: set[str] = set()
        # Compile (or load from cache) the RANSAC kernel off the frame path.
        warm_up_in_background(configs.localizer.ransac)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_configs(
        cls,
        configs: NodeConfigs,
        *,
        matcher: Any = None,
        depth: Any = None,
        patches: Any = None,
        logger: _Logger | None = None,
    ) -> Pipeline:
        """Build the matcher, depth provider, patch source and localizer from ``configs``.

        Components passed explicitly are used instead of being built (tests, tools).

        Raises:
            cvgl_ros.ros.errors.ParameterError: no map (``tiles.source``) configured.
            Exception: start-up failures of the components (missing weights, unreadable tile
                cache), with their own messages.
        """
        from cvgl_ros.core.geodesy import LocalEnu
        from cvgl_ros.core.localizer import Localizer

        if matcher is None:
            from cvgl_ros.models.factory import build_matcher

            matcher = build_matcher(configs.matcher)
        if depth is None:
            from cvgl_ros.models.factory import build_depth

            depth = build_depth(configs.depth)
        if patches is None:
            patches = build_patches(configs)
        origin = configs.node.map_origin
        localizer = Localizer(
            configs.localizer,
            matcher,
            depth,
            patches,
            map_origin=LocalEnu(*origin) if origin is not None else None,
        )
        return cls(configs, localizer, logger)

    @classmethod
    def from_params(
        cls, values: Mapping[str, Any], *, logger: _Logger | None = None, **components: Any
    ) -> Pipeline:
        """Validate flat parameter values and build the pipeline (see :meth:`from_configs`)."""
        return cls.from_configs(configs_from_params(values), logger=logger, **components)

    @classmethod
    def from_params_file(
        cls,
        path: str | Path | None,
        overrides: Mapping[str, Any] | Sequence[str] | None = None,
        *,
        node_name: str = const.NODE_NAME,
        logger: _Logger | None = None,
        **components: Any,
    ) -> Pipeline:
        """Build from a node parameter YAML plus overrides (``{"name": v}`` or ``name:=v``)."""
        values = merged_values(path, overrides, node_name)
        return cls.from_params(values, logger=logger, **components)

    # ------------------------------------------------------------------ properties

    @property
    def configs(self) -> NodeConfigs:
        """The current configuration."""
        return self._configs

    @property
    def localizer(self) -> Any:
        """The core localizer."""
        return self._localizer

    @property
    def patch_source(self) -> Any:
        """The patch source the localizer uses (its public ``patches``)."""
        return self._localizer.patches

    @property
    def has_camera(self) -> bool:
        """True once a usable CameraInfo arrived (always True for panoramas)."""
        return self._camera is not None or self._configs.node.camera_model == "equirectangular"

    @property
    def latest_fix(self) -> GnssPrior | None:
        """The newest GNSS prior received."""
        with self._lock:
            return self._fixes.latest

    def set_extrinsics_provider(self, provider: Callable[[str], CameraExtrinsics] | None) -> None:
        """Take the camera extrinsics from ``provider(image frame_id)`` instead of parameters.

        The provider raises ``LookupError`` (with the reason) while it has none; such a frame
        fails with status ``error``.
        """
        self._extrinsics_provider = provider

    def stats_snapshot(self) -> dict[str, Any]:
        """Counters and recent measurements (see :class:`PipelineStats`)."""
        with self._lock:
            snap = self.stats.snapshot()
        snap["ransac_implementation"] = describe_implementation(self._configs.localizer.ransac)
        source = self.patch_source
        tile_stats = getattr(source, "stats", None)
        if callable(tile_stats):
            try:
                snap["tiles"] = dict(tile_stats())
            except Exception as exc:  # diagnostics must never fail on a source's counters
                snap["tiles"] = {"error": f"{type(exc).__name__}: {exc}"}
        return snap

    # ------------------------------------------------------------------ runtime updates

    def update_configs(self, configs: NodeConfigs) -> None:
        """Apply run-time-safe changes (localizer gates/RANSAC/covariance, fix/IMU handling).

        The localizer is rebuilt around the same matcher, depth provider, patch source and map
        origin; the next frame uses it.
        """
        from cvgl_ros.core.localizer import Localizer

        warm_up_in_background(configs.localizer.ransac)
        old = self._localizer
        localizer = Localizer(
            configs.localizer,
            old.matcher,
            old.depth,
            old.patches,
            map_origin=old.map_origin,
        )
        with self._lock:
            self._localizer = localizer
            self._configs = configs

    # ------------------------------------------------------------------ inputs

    def _skip(self, key: str, message: str) -> None:
        self.stats.skipped[key] += 1
        if key not in self._warned:  # once per kind: a bad stream must not flood the log
            self._warned.add(key)
            self._log.warning(f"skipping input ({key}): {message} (further ones only counted)")

    def _reject_input(self, counter: str, kind: str, exc: Exception) -> bool:
        """Count a ``kind`` message that did not convert and skip it; returns False.

        A :class:`MessageConversionError` is skipped under its ``reason``, anything else (a
        message of the wrong shape) as ``malformed``.

        Args:
            counter: the :class:`PipelineStats` input counter of the message's kind.
            kind: key prefix (``camera_info``, ``fix``, ``imu``).
            exc: what the conversion raised.
        """
        if isinstance(exc, MessageConversionError):
            key, message = f"{kind}:{exc.reason}", str(exc)
        else:
            key, message = f"{kind}:malformed", f"{type(exc).__name__}: {exc}"
        with self._lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            self._skip(key, message)
        return False

    def on_camera_info(self, msg: Any) -> bool:
        """Store the camera model of a CameraInfo message; False when it was unusable."""
        try:
            camera = convert.camera_from_camera_info(
                msg, self._configs.node.max_principal_point_offset_fraction
            )
        except (AttributeError, TypeError, ValueError) as exc:  # incl. MessageConversionError
            return self._reject_input("camera_infos_in", "camera_info", exc)
        with self._lock:
            self.stats.camera_infos_in += 1
            self._camera = camera
        return True

    def on_fix(self, msg: Any) -> bool:
        """Add a NavSatFix to the fix buffer; False when it was rejected (counted)."""
        s = self._configs.node
        try:
            prior = convert.gnss_prior_from_navsatfix(
                msg, s.fix_default_sigma_m, s.fix_min_sigma_m
            )
        except (AttributeError, TypeError, ValueError) as exc:  # incl. FixRejectedError
            return self._reject_input("fixes_in", "fix", exc)
        service = int(getattr(getattr(msg, "status", None), "service", 0) or 0)
        with self._lock:
            self.stats.fixes_in += 1
            if service > 0:
                self._fix_service = service
        return self.on_gnss_prior(prior, counted=True)

    def on_gnss_prior(self, prior: GnssPrior, *, counted: bool = False) -> bool:
        """Add an already-converted prior (e.g. from gpsd) to the fix buffer."""
        with self._lock:
            if not counted:
                self.stats.fixes_in += 1
            self._fixes.add_or_restart(prior)
            self.stats.fixes_used += 1
        return True

    def on_imu(self, msg: Any) -> bool:
        """Buffer the IMU attitude (roll/pitch for gravity, yaw for the optional prior)."""
        try:
            q = convert.imu_orientation_xyzw(msg)
            stamp_s = convert.header_stamp_s(msg)
            sigma = convert.imu_yaw_sigma_rad(msg, self._configs.node.imu_yaw_sigma_rad)
        except (AttributeError, TypeError, ValueError) as exc:
            return self._reject_input("imu_in", "imu", exc)
        with self._lock:
            self.stats.imu_in += 1
            if q is None:
                self._skip("imu:no_orientation", "Imu message carries no orientation")
                return False
            if not math.isfinite(stamp_s):
                self._skip("imu:bad_stamp", f"Imu stamp is not finite: {stamp_s}")
                return False
            self._imu.add(ImuSample(stamp_s, q, sigma))
        return True

    # ------------------------------------------------------------------ images

    def on_image(self, msg: Any) -> PoseEstimate:
        """Localize one Image/CompressedImage message; never raises on bad data."""
        return self.process_image(msg).estimate

    def process_image(self, msg: Any) -> FrameResult:
        """Localize one Image/CompressedImage message; see :class:`FrameResult`."""
        t0 = time.perf_counter()
        try:
            stamp_s = convert.header_stamp_s(msg)
            stamp = convert.header_stamp(msg)
            frame_id = str(msg.header.frame_id)
        except (AttributeError, TypeError, ValueError) as exc:
            return self._finish(
                failure(PoseStatus.BAD_IMAGE, f"image has no usable header: {exc}", 0.0),
                None,
                "",
                None,
            )
        with self._lock:
            self.stats.images_in += 1
        try:
            image = convert.any_image_to_rgb(msg)
        except MessageConversionError as exc:
            with self._lock:
                self._skip(f"image:{exc.reason}", str(exc))
            return self._finish(failure(PoseStatus.BAD_IMAGE, str(exc), stamp_s), None, frame_id)
        except Exception as exc:  # a malformed message of any shape is a bad image
            with self._lock:
                self._skip("image:malformed", f"{type(exc).__name__}: {exc}")
            return self._finish(
                failure(PoseStatus.BAD_IMAGE, f"malformed image: {exc}", stamp_s), None, frame_id
            )
        decode_s = time.perf_counter() - t0
        with self._lock:
            duplicate = self._note_stamp(stamp, stamp_s)
        if duplicate:
            return self._finish(
                failure(
                    PoseStatus.BAD_IMAGE,
                    f"duplicate image stamp {stamp[0]}.{stamp[1]:09d}: an image with this "
                    "stamp was already localized",
                    stamp_s,
                ),
                None,
                frame_id,
            )
        result = self.localize_rgb(image, stamp_s, frame_id, decode_s=decode_s)
        return dataclasses.replace(result, stamp=stamp)

    def _note_stamp(self, stamp: tuple[int, int], stamp_s: float) -> bool:
        """Remember a decoded image's exact stamp; True (counted, skipped) for a duplicate.

        A duplicate would publish a second pose for the same instant, which a filter fusing
        ``~/pose`` counts as two independent measurements. Out-of-order stamps are counted
        and localized (each frame is self-consistent); a jump back by more than a minute
        (looped bag, reset simulation) starts the memory over. Caller holds the lock.
        """
        if jumped_back(stamp_s, self._newest_stamp_s):
            self._recent_stamps.clear()
            self._recent_set.clear()
            self._newest_stamp_s = -math.inf
        if stamp in self._recent_set:
            self._skip("image:duplicate_stamp", "an image with the same stamp was localized")
            return True
        if stamp_s < self._newest_stamp_s:
            self.stats.images_out_of_order += 1
        self._newest_stamp_s = max(self._newest_stamp_s, stamp_s)
        self._recent_stamps.append(stamp)
        self._recent_set.add(stamp)
        if len(self._recent_stamps) > _RECENT_STAMPS:
            self._recent_set.discard(self._recent_stamps.popleft())
        return False

    def localize_rgb(
        self, image: UInt8Array, stamp_s: float, frame_id: str = "", *, decode_s: float = 0.0
    ) -> FrameResult:
        """Localize a decoded (H, W, 3) uint8 RGB image stamped ``stamp_s`` (seconds)."""
        s = self._configs.node
        with self._lock:
            localizer = self._localizer
            try:
                prior = self._fixes.prior_at(stamp_s, s.max_fix_age_s)
            except PriorUnavailableError as exc:
                status = PoseStatus.NO_FIX if exc.reason == "no_fix" else PoseStatus.STALE_FIX
                return self._finish_locked(failure(status, str(exc), stamp_s), None, frame_id)
            camera = self._camera
            imu: ImuSample | AttitudeUnavailableError | None = None
            if s.use_imu:
                try:
                    imu = self._imu.sample_at(stamp_s, s.max_imu_age_s, s.imu_max_extrapolation_s)
                except AttitudeUnavailableError as exc:
                    imu = exc
        try:
            camera = self._camera_for(camera, image)
        except MessageConversionError as exc:
            with self._lock:
                self._skip(f"camera_info:{exc.reason}", str(exc))
            return self._finish(failure(PoseStatus.ERROR, str(exc), stamp_s), prior, frame_id)
        if camera is None:
            return self._finish(
                failure(PoseStatus.ERROR, "no CameraInfo received yet", stamp_s), prior, frame_id
            )
        try:
            extrinsics = self._extrinsics_for(frame_id)
        except LookupError as exc:
            return self._finish(failure(PoseStatus.ERROR, str(exc), stamp_s), prior, frame_id)
        body_from_camera = extrinsics.body_from_camera
        gravity, yaw_prior, yaw_sigma, attitude_kw = self._attitude(imu, body_from_camera)
        origin_before = localizer.map_origin
        try:
            estimate = localizer.localize(
                image,
                camera,
                prior,
                gravity,
                stamp_s,
                yaw_prior_rad=yaw_prior,
                yaw_prior_sigma_rad=yaw_sigma,
                **attitude_kw,
            )
        except Exception as exc:  # the contract says never, but the node must survive anyway
            self._log.error(f"localizer raised {type(exc).__name__}: {exc}")
            estimate = failure(PoseStatus.ERROR, f"{type(exc).__name__}: {exc}", stamp_s)
        # The localizer solved for the camera; publish base_link (its lever arm turns with the
        # yaw and tilts with the IMU roll/pitch: gravity_from_body = gravity @ body_from_camera^T).
        lever_g = horizontal_lever_arm_m(extrinsics.camera_in_base_m, gravity @ body_from_camera.T)
        estimate = base_estimate_from_camera_estimate(estimate, lever_g, localizer.map_origin)
        if origin_before is None and localizer.map_origin is not None and not self._origin_logged:
            self._origin_logged = True
            o = localizer.map_origin
            self._log.info(
                f"map frame origin set from the first fix: lat {o.origin_lat_deg:.7f} deg, "
                f"lon {o.origin_lon_deg:.7f} deg"
            )
        with self._lock:
            self.stats.add_latency("decode", decode_s)
        return self._finish(estimate, prior, frame_id, image)

    def _extrinsics_for(self, frame_id: str) -> CameraExtrinsics:
        """The camera extrinsics for an image (provider's, else the parameters').

        Raises:
            LookupError: the provider has no transform for ``frame_id`` (yet).
        """
        provider = self._extrinsics_provider
        return provider(frame_id) if provider is not None else self._extrinsics

    def _camera_for(self, camera: Any, image: UInt8Array) -> Any:
        height, width = int(image.shape[0]), int(image.shape[1])
        if self._configs.node.camera_model == "equirectangular":
            from cvgl_ros.core.camera import EquirectangularCamera

            return EquirectangularCamera(width, height)
        if camera is None:
            return None
        return convert.camera_for_image(
            camera, width, height, self._configs.node.camera_info_allow_resize
        )

    def _attitude(
        self, imu: ImuSample | AttitudeUnavailableError | None, body_from_camera: FloatArray
    ) -> tuple[FloatArray, float | None, float | None, dict[str, float]]:
        """Gravity, yaw prior and attitude uncertainty of one frame.

        Args:
            imu: the IMU orientation at the image stamp, why there is none, or None when
                ``use_imu`` is off.
            body_from_camera: (3, 3) the camera's mount on the body (parameters or TF).

        Returns:
            (gravity_from_camera, yaw prior rad or None, its sigma rad or None, extra keyword
            arguments of ``Localizer.localize``: ``attitude_sigma_rad`` when the frame falls
            back to the static mount although an IMU was expected).
        """
        from cvgl_ros.core.mount import gravity_from_imu

        s = self._configs.node
        if isinstance(imu, ImuSample):
            with self._lock:
                self.stats.last_attitude_source = "imu"
            gravity = gravity_from_imu(imu.orientation_xyzw, body_from_camera)
            if not s.use_imu_yaw:
                return gravity, None, None, {}
            yaw = yaw_from_quaternion_xyzw(imu.orientation_xyzw)
            return gravity, yaw, imu.yaw_sigma_rad, {}
        if imu is None:  # use_imu off: the static mount is the configured attitude
            with self._lock:
                self.stats.last_attitude_source = "static_mount"
            return body_from_camera, None, None, {}
        # The IMU was expected but cannot give this frame's attitude: the static mount's tilt
        # error is then the platform's whole roll/pitch, which the covariance must carry.
        with self._lock:
            self.stats.attitude_fallbacks[imu.reason] += 1
            self.stats.last_attitude_source = f"static_mount:{imu.reason}"
            key = f"imu_fallback:{imu.reason}"
            if key not in self._warned:
                self._warned.add(key)
                self._log.warning(
                    f"{imu}: using the static camera mount with attitude sigma "
                    f"{s.static_attitude_sigma_rad:.3f} rad (further frames only counted)"
                )
        sigma = max(
            s.static_attitude_sigma_rad, self._configs.localizer.covariance.attitude_sigma_rad
        )
        # level body: gravity frame = body frame
        return body_from_camera, None, None, {"attitude_sigma_rad": sigma}

    def _finish(
        self,
        estimate: PoseEstimate,
        prior: GnssPrior | None,
        frame_id: str,
        image: UInt8Array | None = None,
    ) -> FrameResult:
        with self._lock:
            return self._finish_locked(estimate, prior, frame_id, image)

    def _finish_locked(
        self,
        estimate: PoseEstimate,
        prior: GnssPrior | None,
        frame_id: str,
        image: UInt8Array | None = None,
    ) -> FrameResult:
        st = self.stats
        st.last_status = estimate.status.value
        for stage, seconds in estimate.timings_s.items():
            st.add_latency(stage, seconds)
        if estimate.ok:
            st.poses_ok += 1
            st.inliers.append(int(estimate.inliers))
            st.inlier_ratios.append(float(estimate.inlier_ratio))
        else:
            st.failures[estimate.status.value] += 1
            st.last_failure_status = estimate.status.value
            st.last_failure = "; ".join(estimate.reasons) or estimate.status.value
        altitude_m, altitude_var_m2 = convert.fix_altitude(
            prior, self._configs.node.fix_default_altitude_m
        )
        return FrameResult(
            estimate=estimate,
            prior=prior,
            frame_id=frame_id,
            image=image,
            fix_altitude_m=altitude_m,
            fix_altitude_var_m2=altitude_var_m2,
            fix_service=self._fix_service,
        )


def build_patches(configs: NodeConfigs) -> Any:
    """The patch source the configuration describes.

    Raises:
        cvgl_ros.ros.errors.ParameterError: ``tiles.source`` is empty or names a map that
            cannot be opened, or ``tile_cache_path`` a file that is not a usable tile cache
            (the message names the parameter, the file and the reason).
    """
    from cvgl_ros.ros.errors import ParameterError
    from cvgl_ros.tiles import build_patch_source
    from cvgl_ros.tiles.errors import CacheError

    if configs.tiles is None:
        raise ParameterError(
            "tiles.source",
            "no map configured: set a GeoTIFF path, an .mbtiles file, an XYZ URL template or "
            "wms:URL",
        )
    try:
        return build_patch_source(
            configs.tiles,
            configs.node.tile_cache_path or None,
            configs.patch,
            offline=configs.node.offline,
            cache_config=configs.cache,
            prefetch_config=configs.prefetch,
        )
    except CacheError as exc:
        raise ParameterError("tile_cache_path", f"unusable tile cache: {exc}") from exc
    except (ImportError, MemoryError):
        raise
    except Exception as exc:  # rasterio, sqlite3 and OS errors of a bad map file
        raise ParameterError(
            "tiles.source",
            f"cannot open the map '{configs.tiles.source}': {type(exc).__name__}: {exc}",
        ) from exc
