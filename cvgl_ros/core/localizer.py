"""The one entry point: ground image + camera + gravity + GNSS prior -> ``PoseEstimate``.

Stages (each timed in ``PoseEstimate.timings_s``):

1. ``patch``: the injected :class:`PatchSource` builds a north-up metric patch at the prior,
   or the previous patch is reused while the prior stays near its centre and inside it
   (:class:`~cvgl_ros.core.config.PatchReuseConfig`; the matcher then finds its aerial
   features cached).
2. ``match``: the injected :class:`Matcher` gives ground <-> aerial pixel correspondences.
3. ``depth``: the injected :class:`DepthProvider` gives a depth per matched ground pixel.
4. ``lift``: pixels + depth -> planar points ``g_i`` in the gravity-aligned body frame
   (:func:`~cvgl_ros.core.lifting.lift_pixels`); aerial pixels -> ``a_i`` (east, north) metres
   from the patch centre (:meth:`AerialPatch.pixel_to_en`).
5. ``ransac``: ``a_i ≈ s R g_i + t`` by RANSAC + local optimisation
   (:func:`~cvgl_ros.core.ransac.ransac_similarity`) with scale, yaw and position priors, then the
   covariance (:func:`~cvgl_ros.core.covariance.pose_covariance`) and the gates
   (:func:`~cvgl_ros.core.gating.gate_pose`).

``t`` is the camera position in the patch frame (the local ENU tangent plane at the centre of
the patch actually used, which need not be the prior) and ``yaw = atan2(R[1,0], R[0,0])`` the
ENU heading of body +x. The result is converted to WGS84 and to the map ENU frame (origin
:attr:`Localizer.map_origin`), rotating yaw and covariance by the small angle between the two
tangent planes.

:meth:`Localizer.localize` never raises on bad data: every failure becomes a non-OK
``PoseEstimate`` whose ``reasons`` say what happened.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from cvgl_ros.core.camera import CameraModel, EquirectangularCamera, PinholeCamera
from cvgl_ros.core.config import LocalizerConfig, PatchReuseConfig
from cvgl_ros.core.covariance import PoseCovariance, pose_covariance
from cvgl_ros.core.errors import (
    CoreError,
    DegenerateInputError,
    InvalidInputError,
    NoImageryError,
    NoValidHypothesisError,
)
from cvgl_ros.core.gating import GateResult, gate_pose, log10_nfa
from cvgl_ros.core.geodesy import LocalEnu, wrap_angle_rad
from cvgl_ros.core.interfaces import (
    DepthProvider,
    Matcher,
    PatchSource,
    ResolutionAwarePatchSource,
    ViewMatcher,
)
from cvgl_ros.core.lifting import lift_pixels
from cvgl_ros.core.mount import check_rotation
from cvgl_ros.core.ransac import HypothesisPriors, RansacResult, ransac_similarity
from cvgl_ros.core.types import (
    AerialPatch,
    Correspondences,
    FloatArray,
    GnssPrior,
    LocalizationDebug,
    PoseEstimate,
    PoseStatus,
    UInt8Array,
)
from cvgl_ros.core.view import ViewPlan, plan_view

logger = logging.getLogger(__name__)

# Yaw-prior standard deviation assumed when a yaw prior comes without one.
DEFAULT_YAW_PRIOR_SIGMA_RAD = math.radians(10.0)
# A planned patch is reused only while its resolution is within this fraction of the plan's.
_REUSE_GSD_TOL = 0.15


@dataclass(frozen=True)
class PatchPoseSolution:
    """Pose of the camera in the patch frame (before conversion to the map and WGS84).

    Attributes:
        ransac: the RANSAC result (model, inliers, residuals).
        covariance: covariance of (east, north, yaw) in the patch frame.
        gate: gating outcome.
        log10_nfa: significance of the inlier set (None when not computed).
    """

    ransac: RansacResult
    covariance: PoseCovariance
    gate: GateResult
    log10_nfa: float | None = None

    @property
    def position_en_m(self) -> FloatArray:
        """(2,) float64, camera (east, north), metres from the patch centre."""
        return self.ransac.model.translation_m

    @property
    def yaw_enu_rad(self) -> float:
        """ENU yaw of body +x in the patch frame, radians."""
        return self.ransac.model.yaw_rad


def solve_patch_pose(
    points_g: FloatArray,
    aerial_en_m: FloatArray,
    weights: FloatArray | None,
    config: LocalizerConfig,
    prior_en_m: FloatArray,
    prior_cov_en_m2: FloatArray,
    yaw_prior_rad: float | None = None,
    yaw_prior_sigma_rad: float | None = None,
    aerial_m_per_px: float | None = None,
    point_ranges: FloatArray | None = None,
    scale_bounds: tuple[float, float] | None = None,
    search_area_m2: float | None = None,
) -> PatchPoseSolution:
    """RANSAC + covariance + gating on lifted correspondences (the numeric heart of the core).

    Args:
        points_g: (N, 2) float64, planar ground points, gravity-aligned body frame.
        aerial_en_m: (N, 2) float64, matched aerial points (east, north), metres, patch frame.
        weights: (N,) float64 match probabilities, or None.
        config: localizer configuration.
        prior_en_m: (2,) float64, GNSS prior position in the patch frame, metres.
        prior_cov_en_m2: (2, 2) float64, GNSS covariance, m² (eigenvalues floored at
            ``inlier_threshold_m²`` for gating).
        yaw_prior_rad: ENU yaw prior, radians, or None.
        yaw_prior_sigma_rad: its standard deviation (default 10 degrees when None).
        aerial_m_per_px: resolution of the aerial patch the matches come from, metres per
            pixel, for the covariance's keypoint floor; None leaves that floor out.
        point_ranges: (N,) float64, 3-D distance of each lifted point from the camera, in the
            units of ``points_g``; the fitted scale times their median over the inliers is the
            metric range of the covariance's attitude term. None leaves that term out.
        scale_bounds: (min, max) plausible similarity scale for this frame (from the known
            height or a metric depth, :func:`scale_bounds_for`); None uses the gating
            configuration's ``scale_min``/``scale_max``.
        search_area_m2: area over which the aerial points of wrong matches would scatter
            (the valid part of the patch), m²; gives the significance gate
            (:func:`~cvgl_ros.core.gating.log10_nfa`). None skips that gate.

    Returns:
        The solution; check ``gate.status`` before using it.

    Raises:
        InvalidInputError: malformed input (NaN, inf, empty, shapes).
        DegenerateInputError: too few / degenerate points, no hypothesis within the priors.
    """
    rc, gc = config.ransac, config.gating
    if scale_bounds is not None:
        gc = dataclasses.replace(gc, scale_min=scale_bounds[0], scale_max=scale_bounds[1])
    prior_cov = np.asarray(prior_cov_en_m2, dtype=np.float64)
    prior_en = np.asarray(prior_en_m, dtype=np.float64).reshape(-1)
    if prior_cov.shape != (2, 2) or not np.isfinite(prior_cov).all():
        raise InvalidInputError(f"prior_cov_en_m2 must be a finite (2, 2) array, got {prior_cov}")
    if prior_en.shape != (2,) or not np.isfinite(prior_en).all():
        raise InvalidInputError(f"prior_en_m must be a finite (2,) array, got {prior_en}")
    sym = 0.5 * (prior_cov + prior_cov.T)
    vals, vecs = np.linalg.eigh(sym)
    # GNSS receivers may report a zero covariance: never gate (hypotheses or the final pose)
    # tighter than the inlier threshold.
    floor = rc.inlier_threshold_m**2
    gate_cov = (vecs * np.maximum(vals, floor)) @ vecs.T
    yaw_sigma = None
    if yaw_prior_rad is not None:
        yaw_sigma = (
            DEFAULT_YAW_PRIOR_SIGMA_RAD if yaw_prior_sigma_rad is None else yaw_prior_sigma_rad
        )
    priors = HypothesisPriors(
        scale_min=gc.scale_min,
        scale_max=gc.scale_max,
        yaw_rad=yaw_prior_rad,
        yaw_tolerance_rad=(
            math.pi
            if yaw_sigma is None
            else min(math.pi, max(rc.yaw_prior_gate_n_sigma * yaw_sigma, 1e-6))
        ),
        position_en_m=prior_en,
        position_cov_m2=gate_cov,
        position_gate_n_sigma=rc.position_prior_gate_n_sigma,
    )
    result = ransac_similarity(points_g, aerial_en_m, weights, rc, priors)
    inl = result.inlier_mask
    inlier_range_m = None
    if point_ranges is not None:
        ranges = np.asarray(point_ranges, dtype=np.float64).reshape(-1)
        if ranges.shape != inl.shape or not np.all(np.isfinite(ranges)):
            raise InvalidInputError("point_ranges must be finite, one per point of points_g")
        if np.any(inl):
            inlier_range_m = result.model.scale * float(np.median(np.abs(ranges[inl])))
    w_inl = None
    if weights is not None and rc.use_weights and rc.weighted_refit:
        w_inl = np.asarray(weights, dtype=np.float64)[inl]
    try:
        cov = pose_covariance(
            np.asarray(points_g)[inl],
            np.asarray(aerial_en_m)[inl],
            result.model,
            w_inl,
            result.inlier_ratio,
            config.covariance,
            aerial_m_per_px=aerial_m_per_px,
            inlier_range_m=inlier_range_m,
        )
    except DegenerateInputError:
        # Too few inliers for a covariance: the gates refuse the pose (NaN covariance).
        nan3 = np.full((3, 3), np.nan)
        cov = PoseCovariance(
            cov_en_yaw=nan3, sigma_m=math.nan, inflation=math.nan, raw_cov_en_yaw=nan3.copy()
        )
    nfa = None
    if search_area_m2 is not None and search_area_m2 > 0.0:
        p_inlier = min(1.0, math.pi * rc.inlier_threshold_m**2 / search_area_m2)
        nfa = log10_nfa(len(inl), result.num_inliers, p_inlier)
    gate = gate_pose(
        num_inliers=result.num_inliers,
        inlier_ratio=result.inlier_ratio,
        scale=result.model.scale,
        position_en_m=result.model.translation_m,
        cov_en_yaw=cov.cov_en_yaw,
        prior_en_m=prior_en,
        prior_cov_en_m2=gate_cov,
        config=gc,
        yaw_rad=result.model.yaw_rad,
        yaw_prior_rad=yaw_prior_rad,
        yaw_prior_sigma_rad=yaw_sigma,
        log10_nfa=nfa,
    )
    return PatchPoseSolution(ransac=result, covariance=cov, gate=gate, log10_nfa=nfa)


def scale_bounds_for(
    heights_m: FloatArray,
    config: LocalizerConfig,
    height_m: float | None = None,
    metric_scale_sigma: float | None = None,
) -> tuple[float, float] | None:
    """The plausible similarity scale of one frame, from its known height or a metric depth.

    With the camera height above the ground ``h`` known (fix altitude minus terrain
    elevation, :class:`~cvgl_ros.core.config.HeightConfig`), the lifted points should lie
    between the ground and ``surface_relief_m`` above it, while in depth units they lie a
    median ``m = median(-heights_m)`` below the camera; so the scale is within
    ``[(h - relief - k sigma) / m, (h + k sigma) / m]`` (``k = scale_gate_n_sigma``, ``sigma =
    altitude_sigma_m``). Without a height but with a metric depth of relative scale error
    ``sigma_s`` it is within ``[1 / (1 + k sigma_s), 1 + k sigma_s]``. The result is
    intersected with the gating configuration's ``scale_min``/``scale_max``.

    Args:
        heights_m: (M,) float64, z (up) of the lifted points relative to the camera, depth
            units.
        config: localizer configuration (``height`` and ``gating`` sections).
        height_m: camera height above the ground from the fix, metres, or None.
        metric_scale_sigma: relative 1-sigma scale error of a metric depth provider, or None.

    Returns:
        ``(scale_min, scale_max)``, or None when neither source applies (the configured gates
        alone then bound the scale).
    """
    hc, gc = config.height, config.gating
    k = hc.scale_gate_n_sigma
    bounds: tuple[float, float] | None = None
    below = -np.asarray(heights_m, dtype=np.float64).reshape(-1)
    below = below[np.isfinite(below) & (below > 0.0)]
    if height_m is not None and below.size:
        m = float(np.median(below))
        low = (height_m - hc.surface_relief_m - k * hc.altitude_sigma_m) / m
        high = (height_m + k * hc.altitude_sigma_m) / m
        bounds = (max(low, 0.05 * height_m / m), high)
    elif metric_scale_sigma is not None and math.isfinite(metric_scale_sigma):
        spread = 1.0 + k * max(metric_scale_sigma, 0.0)
        bounds = (1.0 / spread, spread)
    if bounds is None:
        return None
    low, high = max(bounds[0], gc.scale_min), min(bounds[1], gc.scale_max)
    if not low < high:
        logger.debug("scale bounds %s do not meet the configured gates; using them alone", bounds)
        return bounds
    return low, high


class _StageError(Exception):
    """Internal: stop the pipeline with a status and a reason."""

    def __init__(self, status: PoseStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Localizer:
    """Localizes a ground image against aerial imagery around a GNSS prior.

    Not thread-safe (it keeps the current aerial patch); call it from one worker thread.

    Args:
        config: configuration of lifting, RANSAC, covariance, gating and patch reuse.
        matcher: ground <-> aerial correspondence finder.
        depth: depth of ground pixels.
        patches: aerial patch source.
        map_origin: origin of the map ENU frame; None = the first prior's position.
    """

    def __init__(
        self,
        config: LocalizerConfig,
        matcher: Matcher,
        depth: DepthProvider,
        patches: PatchSource,
        map_origin: LocalEnu | None = None,
    ) -> None:
        if not isinstance(config, LocalizerConfig):
            raise TypeError(f"config must be a LocalizerConfig, got {type(config).__name__}")
        for name, obj, proto in (
            ("matcher", matcher, Matcher),
            ("depth", depth, DepthProvider),
            ("patches", patches, PatchSource),
        ):
            if not isinstance(obj, proto):
                raise TypeError(f"{name} must implement {proto.__name__}")
        if map_origin is not None and not isinstance(map_origin, LocalEnu):
            raise TypeError("map_origin must be a LocalEnu or None")
        self.config = config
        self.matcher = matcher
        self.depth = depth
        self.patches = patches
        self._map_origin = map_origin
        # The patch kept for reuse, its tangent plane and the stamp of the frame that built it.
        self._patch: AerialPatch | None = None
        self._patch_enu: LocalEnu | None = None
        self._patch_stamp_s = 0.0
        self._patch_planned = False
        self._patches_built = 0
        self._patches_reused = 0

    @property
    def map_origin(self) -> LocalEnu | None:
        """Origin of the map ENU frame (None until set or until the first prior)."""
        return self._map_origin

    def set_map_origin(self, origin: LocalEnu) -> None:
        """Fix the origin of the map ENU frame."""
        if not isinstance(origin, LocalEnu):
            raise TypeError("origin must be a LocalEnu")
        self._map_origin = origin

    def patch_stats(self) -> dict[str, int]:
        """Counters of the patch stage: ``built`` (patch source calls that returned a patch)
        and ``reused`` (frames that reused the current patch)."""
        return {"built": self._patches_built, "reused": self._patches_reused}

    def reset_patch(self) -> None:
        """Forget the current patch: the next frame builds one at its prior."""
        self._patch = None
        self._patch_enu = None

    def _reusable(
        self, prior: GnssPrior, stamp_s: float, plan: ViewPlan | None
    ) -> tuple[AerialPatch, LocalEnu] | None:
        """The current patch and its tangent plane when they may serve ``prior``, else None."""
        patch, enu = self._patch, self._patch_enu
        if patch is None or enu is None:
            return None
        reuse: PatchReuseConfig = self.config.patch_reuse
        if not reuse.enabled or self._patch_planned != (plan is not None):
            return None
        if plan is not None and abs(patch.m_per_px / plan.patch_m_per_px - 1.0) > _REUSE_GSD_TOL:
            return None
        age_s = stamp_s - self._patch_stamp_s
        if not 0.0 <= age_s <= reuse.max_age_s:
            return None
        east, north = enu.to_en(prior.lat_deg, prior.lon_deg)
        d_e, d_n = float(east), float(north)
        half_m = 0.5 * min(patch.size_px) * patch.m_per_px
        if math.hypot(d_e, d_n) > reuse.max_offset_fraction * half_m:
            return None
        if max(abs(d_e), abs(d_n)) + reuse.coverage_n_sigma * prior.largest_sigma_m > half_m:
            return None
        return patch, enu

    def _patch_for(
        self, prior: GnssPrior, stamp_s: float, plan: ViewPlan | None = None
    ) -> tuple[AerialPatch, LocalEnu]:
        """The patch for this frame (reused or built at the prior) and its tangent plane."""
        reusable = self._reusable(prior, stamp_s, plan)
        if reusable is not None:
            self._patches_reused += 1
            return reusable
        self.reset_patch()
        try:
            if plan is None:
                patch = self.patches.patch_at(prior.lat_deg, prior.lon_deg)
            else:
                patch = self.patches.patch_at(  # type: ignore[call-arg]
                    prior.lat_deg,
                    prior.lon_deg,
                    patch_size_px=plan.patch_size_px,
                    patch_m_per_px=plan.patch_m_per_px,
                )
        except NoImageryError as exc:
            raise _StageError(PoseStatus.NO_IMAGERY, f"no imagery: {exc}") from exc
        except Exception as exc:
            logger.exception("patch source failed")
            raise _StageError(PoseStatus.NO_IMAGERY, f"patch source failed: {exc!r}") from exc
        if not isinstance(patch, AerialPatch):
            raise _StageError(PoseStatus.ERROR, "patch source returned no AerialPatch")
        self._patches_built += 1
        enu = LocalEnu(patch.center_lat_deg, patch.center_lon_deg)
        if self.config.patch_reuse.enabled:
            self._patch, self._patch_enu, self._patch_stamp_s = patch, enu, stamp_s
            self._patch_planned = plan is not None
        return patch, enu

    def _camera_height(
        self,
        image: UInt8Array,
        camera: CameraModel,
        prior: GnssPrior,
        r_gc: FloatArray,
    ) -> tuple[float | None, bool]:
        """(camera height above the ground in metres or None, whether it came from the fix).

        From the fix altitude minus the configured ground elevation when both are known;
        otherwise, for adaptive matching only, from the depth provider at the principal point
        (the configured range or plane; never from a relative depth).
        """
        hc = self.config.height
        if hc.enabled and prior.alt_m is not None and math.isfinite(prior.alt_m):
            height = float(prior.alt_m) - hc.ground_elevation_m
            if height >= hc.min_height_m:
                return height, True
            logger.debug("fix altitude gives a height of %.2f m: ignored", height)
        if not self.config.view.adaptive or getattr(self.depth, "relative", False):
            return None, False
        if not isinstance(camera, PinholeCamera):
            return None, False
        centre = np.array([[camera.cx_px, camera.cy_px]])
        try:
            depth = np.asarray(
                self.depth.depth_at(image, camera, centre, r_gc), dtype=np.float64
            ).reshape(-1)
            if depth.shape != (1,) or not (math.isfinite(depth[0]) and depth[0] > 0.0):
                return None, False
            point = camera.backproject(centre, depth) @ r_gc.T
        except Exception as exc:  # a depth failure here only disables adaptive matching
            logger.debug("no camera height from the depth provider: %r", exc)
            return None, False
        height = -float(point[0, 2])
        return (height, False) if height >= hc.min_height_m else (None, False)

    def _plan(
        self,
        camera: CameraModel,
        r_gc: FloatArray,
        height_m: float,
        prior: GnssPrior,
        yaw_prior: float | None,
        yaw_sigma: float | None,
    ) -> ViewPlan | None:
        """The adaptive matching plan, or None (fixed patch) when it does not apply."""
        if not isinstance(self.patches, ResolutionAwarePatchSource):
            return None
        try:
            native = float(self.patches.native_m_per_px_at(prior.lat_deg, prior.lon_deg))
        except NoImageryError as exc:
            raise _StageError(PoseStatus.NO_IMAGERY, f"no imagery: {exc}") from exc
        return plan_view(
            camera,
            r_gc,
            height_m,
            native,
            prior.largest_sigma_m,
            self.config.view,
            yaw_prior_rad=yaw_prior,
            yaw_prior_sigma_rad=DEFAULT_YAW_PRIOR_SIGMA_RAD if yaw_sigma is None else yaw_sigma,
        )

    def _match(self, image: UInt8Array, patch: AerialPatch, plan: ViewPlan | None) -> object:
        """The matcher's correspondences, through the planned view when there is one."""
        if plan is not None and isinstance(self.matcher, ViewMatcher):
            # A reused patch may differ slightly from the planned resolution: match its GSD.
            view = dataclasses.replace(
                plan.view,
                scale=min(1.0, plan.camera_m_per_px / patch.m_per_px),
                m_per_px=patch.m_per_px,
            )
            return self.matcher.match_view(image, patch, view)
        return self.matcher.match(image, patch)

    def localize(
        self,
        image: UInt8Array,
        camera: CameraModel,
        prior: GnssPrior,
        gravity_from_camera: FloatArray,
        stamp_s: float,
        yaw_prior_rad: float | None = None,
        yaw_prior_sigma_rad: float | None = None,
        attitude_sigma_rad: float | None = None,
    ) -> PoseEstimate:
        """Estimate the camera pose; never raises on bad data.

        Args:
            image: (H, W, 3) uint8 RGB or (H, W) uint8 mono ground image.
            camera: camera model of ``image``.
            prior: GNSS fix at (or interpolated to) the image stamp.
            gravity_from_camera: (3, 3) rotation optical -> gravity-aligned body frame.
            stamp_s: image stamp, seconds.
            yaw_prior_rad: ENU yaw prior of body +x (IMU/compass), radians, or None.
            yaw_prior_sigma_rad: its standard deviation, radians (default 10 degrees).
            attitude_sigma_rad: roll/pitch uncertainty of ``gravity_from_camera`` for this
                frame, radians, replacing ``config.covariance.attitude_sigma_rad`` (e.g. a
                static mount used because the IMU was missing); None keeps the config's.

        Returns:
            The estimate; ``status`` says whether it may be published and ``reasons`` why not.
        """
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        dbg: dict[str, object] = {}
        try:
            return self._localize(
                image,
                camera,
                prior,
                gravity_from_camera,
                float(stamp_s),
                yaw_prior_rad,
                yaw_prior_sigma_rad,
                timings,
                dbg,
                t_start,
                attitude_sigma_rad,
            )
        except _StageError as f:
            status, reasons = f.status, (f.reason,)
        except Exception as exc:  # the node must never die on one frame
            logger.exception("localization failed unexpectedly")
            status, reasons = PoseStatus.ERROR, (f"unexpected error: {exc!r}",)
        timings["total"] = time.perf_counter() - t_start
        logger.debug("localization failed: %s %s", status.value, reasons)
        return PoseEstimate(
            status=status,
            reasons=reasons,
            timings_s=timings,
            stamp_s=_finite_or_zero(stamp_s),
            num_matches=int(dbg.get("num_matches", 0)),  # type: ignore[call-overload]
            debug=self._debug(dbg),
        )

    def _debug(self, dbg: dict[str, object]) -> LocalizationDebug | None:
        if not self.config.keep_debug:
            return None
        return LocalizationDebug(**{k: v for k, v in dbg.items() if k != "num_matches"})  # type: ignore[arg-type]

    def _localize(
        self,
        image: UInt8Array,
        camera: CameraModel,
        prior: GnssPrior,
        gravity_from_camera: FloatArray,
        stamp_s: float,
        yaw_prior_rad: float | None,
        yaw_prior_sigma_rad: float | None,
        timings: dict[str, float],
        dbg: dict[str, object],
        t_start: float,
        attitude_sigma_rad: float | None = None,
    ) -> PoseEstimate:
        cfg = self.config
        if attitude_sigma_rad is not None:
            try:
                frame_cov = dataclasses.replace(
                    cfg.covariance, attitude_sigma_rad=attitude_sigma_rad
                )
            except (TypeError, ValueError) as exc:
                raise _StageError(PoseStatus.ERROR, f"attitude_sigma_rad: {exc}") from exc
            cfg = dataclasses.replace(cfg, covariance=frame_cov)
        if not math.isfinite(stamp_s):
            raise _StageError(PoseStatus.ERROR, f"image stamp is not finite: {stamp_s}")
        if not isinstance(prior, GnssPrior):
            raise _StageError(PoseStatus.NO_FIX, "no GNSS prior")
        _check_image(image, camera)
        try:
            r_gc = check_rotation(gravity_from_camera, "gravity_from_camera", tol=1e-4)
        except InvalidInputError as exc:
            raise _StageError(PoseStatus.ERROR, str(exc)) from exc
        yaw_prior, yaw_sigma = _check_yaw_prior(yaw_prior_rad, yaw_prior_sigma_rad)
        if self._map_origin is None:
            self._map_origin = LocalEnu(prior.lat_deg, prior.lon_deg)
            logger.info(
                "map origin set to the first prior (%.7f, %.7f)", prior.lat_deg, prior.lon_deg
            )

        t0 = time.perf_counter()
        try:
            height_m, height_from_fix = self._camera_height(image, camera, prior, r_gc)
            plan = None
            if cfg.view.adaptive and height_m is not None:
                plan = self._plan(camera, r_gc, height_m, prior, yaw_prior, yaw_sigma)
            patch, patch_enu = self._patch_for(prior, stamp_s, plan)
        finally:
            timings["patch"] = time.perf_counter() - t0
        dbg["patch"] = patch
        dbg["view_plan"] = plan
        dbg["camera_height_m"] = math.nan if height_m is None else height_m

        t0 = time.perf_counter()
        try:
            corr = self._match(image, patch, plan)
        except Exception as exc:
            logger.exception("matcher failed")
            raise _StageError(PoseStatus.ERROR, f"matcher failed: {exc!r}") from exc
        finally:
            timings["match"] = time.perf_counter() - t0
        if not isinstance(corr, Correspondences):
            raise _StageError(PoseStatus.ERROR, "matcher returned no Correspondences")
        corr = _clean_correspondences(corr)
        dbg["correspondences"] = corr
        dbg["num_matches"] = len(corr)
        min_points = max(cfg.gating.min_inliers, 3)
        if len(corr) < min_points:
            raise _StageError(
                PoseStatus.TOO_FEW_MATCHES,
                f"{len(corr)} matches < {min_points} needed",
            )

        t0 = time.perf_counter()
        try:
            depth = np.asarray(
                self.depth.depth_at(image, camera, corr.ground_px, r_gc), dtype=np.float64
            ).reshape(-1)
        except Exception as exc:
            logger.exception("depth provider failed")
            raise _StageError(PoseStatus.ERROR, f"depth provider failed: {exc!r}") from exc
        finally:
            timings["depth"] = time.perf_counter() - t0
        dbg["depth"] = depth
        if depth.shape[0] != len(corr):
            raise _StageError(
                PoseStatus.ERROR,
                f"depth provider returned {depth.shape[0]} values for {len(corr)} pixels",
            )

        t0 = time.perf_counter()
        lifted = lift_pixels(corr.ground_px, depth, camera, r_gc, cfg.lifting)
        aerial_en = patch.pixel_to_en(corr.aerial_px[lifted.index])
        weights = corr.weights[lifted.index]
        timings["lift"] = time.perf_counter() - t0
        dbg["lifted_index"] = lifted.index
        dbg["points_g"] = lifted.points_g
        dbg["aerial_en_m"] = aerial_en
        if len(lifted) < min_points:
            raise _StageError(
                PoseStatus.TOO_FEW_POINTS,
                f"{len(lifted)} of {len(corr)} matches have a usable depth (< {min_points})",
            )

        # The prior in the frame of the patch actually used (not centred on it when reused).
        prior_e, prior_n = patch_enu.to_en(prior.lat_deg, prior.lon_deg)
        prior_en = np.array([float(prior_e), float(prior_n)])
        metric_sigma = getattr(self.depth, "metric_scale_sigma", None)
        bounds = scale_bounds_for(
            lifted.heights_m,
            cfg,
            height_m=height_m if height_from_fix else None,
            metric_scale_sigma=None if metric_sigma is None else float(metric_sigma),
        )
        dbg["scale_bounds"] = bounds
        t0 = time.perf_counter()
        try:
            sol = solve_patch_pose(
                lifted.points_g,
                aerial_en,
                weights,
                cfg,
                prior_en,
                prior.cov_en_m2,
                yaw_prior,
                yaw_sigma,
                aerial_m_per_px=patch.m_per_px,
                point_ranges=np.hypot(np.linalg.norm(lifted.points_g, axis=1), lifted.heights_m),
                scale_bounds=bounds,
                search_area_m2=float(np.count_nonzero(patch.valid_mask)) * patch.m_per_px**2,
            )
        except NoValidHypothesisError as exc:
            status = PoseStatus.OUTSIDE_PRIOR if exc.rejected_by_priors else PoseStatus.DEGENERATE
            raise _StageError(status, str(exc)) from exc
        except DegenerateInputError as exc:
            raise _StageError(PoseStatus.DEGENERATE, f"degenerate geometry: {exc}") from exc
        except CoreError as exc:
            raise _StageError(PoseStatus.ERROR, str(exc)) from exc
        finally:
            timings["ransac"] = time.perf_counter() - t0
        dbg["inlier_mask"] = sol.ransac.inlier_mask
        dbg["residuals_m"] = sol.ransac.residuals_m
        dbg["patch_from_camera"] = sol.ransac.model.matrix
        dbg["ransac_iterations"] = sol.ransac.iterations
        dbg["sigma_m"] = sol.covariance.sigma_m
        dbg["covariance_inflation"] = sol.covariance.inflation
        dbg["log10_nfa"] = math.nan if sol.log10_nfa is None else sol.log10_nfa

        lat, lon, east, north, yaw, cov = self._to_map(patch_enu, sol)
        timings["total"] = time.perf_counter() - t_start
        return PoseEstimate(
            status=sol.gate.status,
            reasons=sol.gate.reasons,
            lat_deg=lat,
            lon_deg=lon,
            east_m=east,
            north_m=north,
            yaw_enu_rad=yaw,
            cov_en_yaw=cov,
            scale=sol.ransac.model.scale,
            inliers=sol.ransac.num_inliers,
            inlier_ratio=sol.ransac.inlier_ratio,
            num_matches=len(corr),
            timings_s=timings,
            stamp_s=stamp_s,
            debug=self._debug(dbg),
        )

    def _to_map(
        self, patch_enu: LocalEnu, sol: PatchPoseSolution
    ) -> tuple[float, float, float, float, float, FloatArray]:
        """Patch-frame pose -> (lat, lon, map east, map north, map yaw, map covariance)."""
        origin = self._map_origin
        if origin is None:  # set in _localize before any solve
            raise _StageError(PoseStatus.ERROR, "map origin unset")
        t = sol.position_en_m
        yaw = sol.yaw_enu_rad
        step_m = 10.0
        e_pts = np.array([t[0], t[0] + step_m * math.cos(yaw), t[0] + step_m])
        n_pts = np.array([t[1], t[1] + step_m * math.sin(yaw), t[1]])
        lat, lon = patch_enu.to_wgs84(e_pts, n_pts)
        me, mn = origin.to_en(lat, lon)
        yaw_map = float(math.atan2(mn[1] - mn[0], me[1] - me[0]))
        # Rotation of the patch frame's east axis in the map frame (meridian convergence).
        conv = math.atan2(mn[2] - mn[0], me[2] - me[0])
        c, s = math.cos(conv), math.sin(conv)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        cov = rot @ sol.covariance.cov_en_yaw @ rot.T
        return (
            float(lat[0]),
            float(lon[0]),
            float(me[0]),
            float(mn[0]),
            float(wrap_angle_rad(yaw_map)),
            np.asarray(0.5 * (cov + cov.T), dtype=np.float64),
        )


def _finite_or_zero(x: object) -> float:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


def _check_image(image: object, camera: object) -> None:
    if not isinstance(camera, PinholeCamera | EquirectangularCamera):
        raise _StageError(PoseStatus.ERROR, f"unsupported camera model {type(camera).__name__}")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise _StageError(PoseStatus.BAD_IMAGE, "image must be a uint8 numpy array")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))) or image.size == 0:
        raise _StageError(PoseStatus.BAD_IMAGE, f"image must be (H, W[, 3]), got {image.shape}")
    h, w = image.shape[:2]
    if (w, h) != (camera.width_px, camera.height_px):
        raise _StageError(
            PoseStatus.BAD_IMAGE,
            f"image is {w}x{h} px but the camera model is {camera.width_px}x{camera.height_px}",
        )


def _check_yaw_prior(
    yaw_prior_rad: float | None, yaw_prior_sigma_rad: float | None
) -> tuple[float | None, float | None]:
    if yaw_prior_rad is None:
        return None, None
    yaw = float(yaw_prior_rad)
    if not math.isfinite(yaw):
        logger.warning("ignoring a non-finite yaw prior %r", yaw_prior_rad)
        return None, None
    if yaw_prior_sigma_rad is None:
        return yaw, None
    sigma = float(yaw_prior_sigma_rad)
    if not (math.isfinite(sigma) and sigma > 0.0):
        logger.warning("ignoring a yaw prior with invalid sigma %r", yaw_prior_sigma_rad)
        return None, None
    return yaw, sigma


def _clean_correspondences(corr: Correspondences) -> Correspondences:
    """Drop rows with non-finite values; clip weights into [0, 1]."""
    finite = (
        np.all(np.isfinite(corr.ground_px), axis=1)
        & np.all(np.isfinite(corr.aerial_px), axis=1)
        & np.isfinite(corr.weights)
    )
    if np.all(finite) and np.all((corr.weights >= 0.0) & (corr.weights <= 1.0)):
        return corr
    dropped = int(np.count_nonzero(~finite))
    if dropped:
        logger.warning("dropped %d correspondences with NaN/inf", dropped)
    return Correspondences(
        ground_px=corr.ground_px[finite],
        aerial_px=corr.aerial_px[finite],
        weights=np.clip(corr.weights[finite], 0.0, 1.0),
    )
