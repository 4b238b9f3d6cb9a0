"""Frozen, validated configuration of the pose core.

One dataclass per stage, composed into :class:`LocalizerConfig`. Every field has a default and a
unit in its name; ``__post_init__`` raises ``ValueError`` naming the offending field.
:meth:`LocalizerConfig.from_dict` builds a config from a nested mapping and rejects unknown keys.

Fields declared with :func:`~cvgl_ros.core.schema.param` are the node's parameters (their
description, range and run-time flag live there, and the range is the field's validation);
the others are internals, set by their defaults or a named preset (:data:`RANSAC_PRESETS`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from cvgl_ros.core.schema import Presets, check_ranges, param

_T = TypeVar("_T")


def _finite(obj: object, name: str) -> float:
    v = float(getattr(obj, name))
    if not math.isfinite(v):
        raise ValueError(f"{type(obj).__name__}.{name} must be finite, got {v}")
    return v


def _positive(obj: object, name: str) -> float:
    v = _finite(obj, name)
    if v <= 0.0:
        raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {v}")
    return v


def _non_negative(obj: object, name: str) -> float:
    v = _finite(obj, name)
    if v < 0.0:
        raise ValueError(f"{type(obj).__name__}.{name} must be >= 0, got {v}")
    return v


def _int_at_least(obj: object, name: str, low: int) -> int:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{type(obj).__name__}.{name} must be an int >= {low}, got {v!r}")
    return v


@dataclass(frozen=True)
class LiftingConfig:
    """Which lifted points are kept.

    Attributes:
        max_depth_m: parameter ``lifting.max_depth_m`` (see its description).
        min_depth_m: points nearer than this to the camera (depth units) are dropped.
        min_height_m: points lower than this (z of the gravity-aligned body frame, metres
            relative to the camera, up positive) are dropped; ``None`` = no limit.
        max_height_m: points higher than this are dropped; ``None`` = no limit.
    """

    max_depth_m: float = param(
        250.0,
        description="""points farther than this from the camera (3-D distance, depth units)
            are dropped: sky, far objects and near-horizon rays of the ground-plane depth,
            whose positions are unreliable. About 40 for a ground vehicle's forward camera,
            above the flight altitude for a drone.""",
        range=(0.01, 1e6),
        runtime=True,
    )
    min_depth_m: float = 0.05
    min_height_m: float | None = None
    max_height_m: float | None = None

    def __post_init__(self) -> None:
        check_ranges(self)
        _non_negative(self, "min_depth_m")
        if self.min_depth_m >= self.max_depth_m:
            raise ValueError("LiftingConfig.min_depth_m must be < max_depth_m")
        if self.min_height_m is not None:
            _finite(self, "min_height_m")
        if self.max_height_m is not None:
            _finite(self, "max_height_m")
        if (
            self.min_height_m is not None
            and self.max_height_m is not None
            and self.min_height_m >= self.max_height_m
        ):
            raise ValueError("LiftingConfig.min_height_m must be < max_height_m")


RansacImplementation = Literal["auto", "numba", "numpy"]
RANSAC_IMPLEMENTATIONS: tuple[str, ...] = typing.get_args(RansacImplementation)

RANSAC_PRESETS = Presets(
    {
        # The field defaults below: at most 2000 hypotheses, 99.9 % confidence, 4 refits.
        # With informative match weights a solve usually stops after one batch of 32.
        "default": {},
        # Slow CPUs and well-matched frames (inlier ratio above about 0.3).
        "fast": {
            "max_iterations": 256,  # hypothesis cap: 8 batches
            "confidence": 0.99,  # stop as soon as an all-inlier sample is 99 % likely
            "lo_iterations": 2,  # local-optimisation refits
        },
        # Low inlier ratios (repetitive texture, a learned matcher's top-k with many
        # outliers): more hypotheses before giving up, more refits of the winner.
        "thorough": {
            "max_iterations": 10000,  # hypothesis cap
            "confidence": 0.9999,  # adaptive stop, one failure in 10^4
            "lo_iterations": 8,  # local-optimisation refits
            "initial_pool_fraction": 0.2,  # first batches sample the best 20 %, not 10 %
        },
    },
    description="""RANSAC's search budget: default (at most 2000 hypotheses, 99.9 %
        confidence, 4 local-optimisation refits); fast (256 hypotheses, 99 %, 2 refits: slow
        CPUs, well-matched frames); thorough (10000 hypotheses, 99.99 %, 8 refits, a wider first
        sampling pool: low inlier ratios). The other internals (seed, batch size, the priors'
        gates, the solver) keep their RansacConfig defaults.""",
    runtime=True,
)
"""Named RANSAC internals (``ransac.preset``); each lists only what it changes."""


@dataclass(frozen=True)
class RansacConfig:
    """RANSAC around the 2-point similarity.

    Attributes:
        inlier_threshold_m: parameter ``ransac.inlier_threshold_m`` (see its description).
        max_iterations: cap on the number of hypotheses.
        confidence: probability of drawing at least one all-inlier sample, for the adaptive
            iteration count.
        seed: seed of the random generator (each solve starts from it: reproducible).
        batch_size: hypotheses generated and scored together (vectorised).
        use_weights: order sampling by weight (PROSAC-style) and weight the MSAC score by match
            probability; False treats all correspondences alike.
        initial_pool_fraction: fraction of the best-weighted correspondences the first batch
            samples from; the pool doubles every batch until it covers all.
        min_pool_size: smallest sampling pool.
        lo_iterations: iterations of the local optimisation (least-squares refit on inliers).
        weighted_refit: weight each inlier by its match probability in the local optimisation
            (and the covariance). Off by default: when the position noise of an inlier does
            not depend on its match probability, equal weights are more accurate (15 % lower
            position error measured with uninformative weights, equal with informative ones);
            the weights still order the sampling and weight the MSAC score.
        min_sample_distance_m: minimal samples whose two ground points are closer than this are
            skipped (their similarity is ill-conditioned).
        yaw_prior_gate_n_sigma: with a yaw prior, hypotheses farther than this many sigmas
            from it are rejected.
        position_prior_gate_n_sigma: with a GNSS prior, hypotheses whose position is farther
            than this many sigmas (Mahalanobis, 2-D) are rejected.
        implementation: ``"auto"`` runs the numba-compiled kernel
            (:mod:`cvgl_ros.core.ransac_kernel`) when numba is installed and the vectorised
            numpy solver otherwise; ``"numba"`` requires the kernel (an error names the package
            to install); ``"numpy"`` always runs numpy. Both run the same algorithm on the same
            seeded draws and agree to rounding; the kernel is 7-9x faster at 512-1024
            correspondences, 3x at 4096 (docs/BENCHMARKS.md).
    """

    PRESETS: ClassVar[Presets] = RANSAC_PRESETS

    inlier_threshold_m: float = param(
        3.0,
        description="""residual (metres in the aerial patch frame) below which a
            correspondence is an inlier; also the MSAC truncation. About the map's
            georeferencing error plus a few aerial pixels.""",
        range=(0.001, 1000.0),
        runtime=True,
    )
    max_iterations: int = 2000
    confidence: float = 0.999
    seed: int = 0
    batch_size: int = 32
    use_weights: bool = True
    initial_pool_fraction: float = 0.1
    min_pool_size: int = 16
    lo_iterations: int = 4
    weighted_refit: bool = False
    min_sample_distance_m: float = 1e-3
    yaw_prior_gate_n_sigma: float = 3.0
    position_prior_gate_n_sigma: float = 5.0
    implementation: RansacImplementation = "auto"

    def __post_init__(self) -> None:
        check_ranges(self)
        _int_at_least(self, "max_iterations", 1)
        c = _finite(self, "confidence")
        if not 0.0 < c < 1.0:
            raise ValueError(f"RansacConfig.confidence must be in (0, 1), got {c}")
        _int_at_least(self, "seed", 0)
        _int_at_least(self, "batch_size", 1)
        f = _finite(self, "initial_pool_fraction")
        if not 0.0 < f <= 1.0:
            raise ValueError(f"RansacConfig.initial_pool_fraction must be in (0, 1], got {f}")
        _int_at_least(self, "min_pool_size", 2)
        _int_at_least(self, "lo_iterations", 0)
        _non_negative(self, "min_sample_distance_m")
        _positive(self, "yaw_prior_gate_n_sigma")
        _positive(self, "position_prior_gate_n_sigma")
        for name in ("use_weights", "weighted_refit"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RansacConfig.{name} must be a bool")
        if self.implementation not in RANSAC_IMPLEMENTATIONS:
            raise ValueError(
                f"RansacConfig.implementation must be one of {RANSAC_IMPLEMENTATIONS}, "
                f"got {self.implementation!r}"
            )


@dataclass(frozen=True)
class CovarianceConfig:
    """Calibration of the (east, north, yaw) covariance.

    ``cov = inflation * C_ls + C_floor``: ``C_ls`` is the sandwich covariance of the weighted
    least-squares similarity fit on the inliers (residual variance from the inliers, Jacobian at
    the solution), ``inflation = base_inflation * (1 + count_inflation / sqrt(n_inliers)) *
    (1 + ratio_inflation * (1 - inlier_ratio))`` (calibrated for chi-square(3) consistency of the
    NEES on simulated correspondences), and ``C_floor`` holds the errors that do not average down
    with the inlier count and cannot be seen in the residuals (see docs/CORE.md): the aerial
    keypoint floor, the map's georeferencing error, the roll/pitch (gravity) error and minimum
    sigmas.

    Attributes:
        base_inflation: overall factor (>= 1; raise it for unmodelled errors such as depth-model
            bias or ground that is not flat).
        count_inflation: inflation growing as the inlier count falls.
        ratio_inflation: inflation growing as the inlier ratio falls (outliers that slip under
            the threshold bias the fit).
        min_sigma_m: floor on the per-point residual standard deviation, metres in the patch
            frame.
        aerial_sigma_px: parameter ``covariance.aerial_sigma_px``.
        map_georef_sigma_m: parameter ``covariance.map_georef_sigma_m``.
        min_position_sigma_m: standard deviation added in quadrature to east and north,
            metres: other unmodelled errors (terrain relief against the flat-ground model,
            rolling shutter, timing).
        min_yaw_sigma_rad: parameter ``covariance.min_yaw_sigma_rad``.
        attitude_sigma_rad: parameter ``covariance.attitude_sigma_rad``.
    """

    base_inflation: float = 1.0
    count_inflation: float = 0.5
    ratio_inflation: float = 0.25
    min_sigma_m: float = 0.01
    aerial_sigma_px: float = param(
        0.1,
        description="""error that all keypoints of one aerial patch share (sub-pixel detector
            bias, pixel-centre conventions, resampling), aerial pixels; times the patch's
            m_per_px it is a position sigma that does not shrink with the inlier count (and,
            over the footprint's radius, a yaw sigma). Good detectors reach 0.1-0.3 px; the
            default is the best case (measured 0.03-0.14 px of total error on synthetic
            flights over real orthophotos). Raise it if the matcher downsamples the patch or
            localises coarsely (learned matchers on a feature grid: about 1). 0 disables it.""",
        range=(0.0, 100.0),
        runtime=True,
    )
    map_georef_sigma_m: float = param(
        1.0,
        description="""absolute georeferencing error of the aerial imagery (one sigma per
            axis, metres), added in quadrature to east and north: the pose is only as good as
            the map it was matched against. Orthophotos and satellite mosaics are typically
            good to 0.5-2 m; SET it to the imagery's stated accuracy. 0 only when the truth
            comes from the same map (synthetic flights rendered from it).""",
        range=(0.0, 1000.0),
        runtime=True,
    )
    min_position_sigma_m: float = 0.02
    min_yaw_sigma_rad: float = param(
        1e-3,
        description="""standard deviation added in quadrature to yaw, radians: map and
            camera-mount yaw errors the inliers cannot see (camera-mount calibration and map
            rotation about 0.0035, about 0.2 deg; orthomosaics' local rotation up to 1 deg).""",
        range=(0.0, 3.2),
        runtime=True,
    )
    attitude_sigma_rad: float = param(
        0.0087,
        description="""1-sigma roll/pitch error of the camera's gravity direction (IMU gravity
            estimate or static mount calibration), radians. A tilt error moves the lifted
            ground points, hence the position, by about the inliers' metric camera-to-ground
            range times the error: added to east and north as (inlier_range_m *
            attitude_sigma_rad)^2. The default 0.0087 (0.5 deg) is a typical MEMS IMU under
            motion or a calibrated mount (a tactical IMU: 0.001-0.002; an uncalibrated mount or
            a nominal attitude without IMU: the expected tilt). 0 disables it.""",
        range=(0.0, 1.5),
        runtime=True,
    )

    def __post_init__(self) -> None:
        if _positive(self, "base_inflation") < 1.0:
            raise ValueError("CovarianceConfig.base_inflation must be >= 1")
        _non_negative(self, "count_inflation")
        _non_negative(self, "ratio_inflation")
        _non_negative(self, "min_sigma_m")
        _non_negative(self, "min_position_sigma_m")
        check_ranges(self)


@dataclass(frozen=True)
class GatingConfig:
    """When a pose is published (every field is a ``gating.*`` parameter)."""

    min_inliers: int = param(
        12,
        description="""fewer RANSAC inliers -> too_few_inliers; also the minimum number of
            matches and lifted points worth solving, and the floor the covariance calibration
            needs.""",
        range=(2, 100000),
        runtime=True,
    )
    min_inlier_ratio: float = param(
        0.15,
        description="a lower inlier ratio (inliers / correspondences) -> low_inlier_ratio.",
        range=(0.0, 1.0),
        runtime=True,
    )
    scale_min: float = param(
        1e-3,
        description="""smallest plausible similarity scale (also bounds RANSAC hypotheses):
            wide for relative depth and unknown altitude; about 0.8 with metric depth (and
            scale_max about 1.25). A camera height (height.ground_elevation_m) or a metric
            depth provider narrows it further per frame.""",
        range=(1e-6, 1e6),
        runtime=True,
    )
    scale_max: float = param(
        1e3,
        description="largest plausible similarity scale (also bounds RANSAC hypotheses).",
        range=(1e-6, 1e6),
        runtime=True,
    )
    prior_gate_n_sigma: float = param(
        5.0,
        description="""a pose farther from the GNSS prior than this many standard deviations
            (2-D Mahalanobis with prior + pose covariance) -> outside_prior; with a yaw prior
            the yaw is gated the same way.""",
        range=(0.1, 1000.0),
        runtime=True,
    )
    max_log10_nfa: float = param(
        -6.0,
        description="""a pose whose inlier set is not significant -> too_few_inliers: log10
            of its number of false alarms (how many models with as many inliers random
            matches would produce, given the inlier threshold's share of the searched patch
            area) above this. It scales the required evidence with the number of matches and
            the patch size; min_inliers stays the floor. .inf disables it.""",
        range=(-1000.0, math.inf),
        runtime=True,
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.scale_min >= self.scale_max:
            raise ValueError("GatingConfig.scale_min must be < scale_max")


@dataclass(frozen=True)
class PatchReuseConfig:
    """When the localizer reuses its current aerial patch instead of building one at the prior.

    Building a patch (tiles -> resampled north-up image) and describing it (matcher features)
    costs far more than a frame's ground-image work, and successive priors of a moving
    vehicle are a few metres apart. The localizer therefore keeps its last patch while the new
    prior stays near that patch's centre and its uncertainty region stays inside the patch;
    otherwise it builds a new patch centred on the prior (hysteresis: one patch serves every
    prior within the margin, whatever the direction of travel). Poses are always computed in
    the frame of the patch actually used, so reuse changes which imagery is searched, never
    the geometry.

    With half-extent ``h`` (metres, half the shorter patch side), prior offset ``d`` from the
    patch centre (metres, in the patch's tangent plane) and the prior's largest horizontal
    standard deviation ``sigma`` (metres), the patch is reused when all hold:
    ``|d| <= max_offset_fraction * h``; ``max(|d_east|, |d_north|) + coverage_n_sigma * sigma
    <= h``; it is younger than ``max_age_s``. A reused patch therefore still reaches at least
    ``(1 - max_offset_fraction) * h`` from the prior in every direction: size the patch
    (``patch.patch_size_px``) for the camera footprint plus the prior's uncertainty with that
    margin. A prior too uncertain for the second condition always gets a fresh patch.

    Attributes:
        max_offset_fraction: largest distance between the prior and the centre of a reused
            patch, as a fraction of the patch half-extent (0 = a new patch at every prior, the
            behaviour without reuse).
        coverage_n_sigma: the disc of this many standard deviations around the prior must lie
            inside a reused patch.
        max_age_s: a patch is rebuilt when it is older than this (image stamps), seconds, so
            that tiles that arrived late (network sources) or a refreshed cache are picked up;
            also rebuilt when the image stamp goes backwards.
    """

    max_offset_fraction: float = 0.25
    coverage_n_sigma: float = 3.0
    max_age_s: float = 5.0

    def __post_init__(self) -> None:
        f = _finite(self, "max_offset_fraction")
        if not 0.0 <= f < 1.0:
            raise ValueError(f"PatchReuseConfig.max_offset_fraction must be in [0, 1), got {f}")
        _non_negative(self, "coverage_n_sigma")
        _positive(self, "max_age_s")

    @property
    def enabled(self) -> bool:
        """True when a patch may be reused at all."""
        return self.max_offset_fraction > 0.0


@dataclass(frozen=True)
class ViewConfig:
    """Ground-resolution-adaptive matching (:mod:`cvgl_ros.core.view`).

    With ``adaptive`` the localizer reads each aerial patch at the camera's ground sampling
    distance (GSD) -- never finer than ``max_map_upsample`` times the map's native
    resolution -- sized to the camera footprint plus the prior's uncertainty, and hands the
    matcher the camera image resampled to that GSD and, with a yaw prior, rotated north-up.
    It needs the camera's height above the ground (:class:`HeightConfig`, or the depth
    provider) and a camera that looks down; otherwise the fixed patch of the patch source's
    own configuration is used.

    Attributes:
        adaptive: parameter ``view.adaptive``.
        max_map_upsample: the patch is never finer than the map's native resolution divided
            by this (interpolating a map further adds no detail, only pixels).
        coverage_n_sigma: the patch covers the camera footprint plus this many standard
            deviations of the GNSS prior.
        patch_margin_m: extra patch half-extent, metres.
        min_patch_size_px: smallest patch edge, pixels.
        max_patch_size_px: largest patch edge, pixels (the GSD is coarsened to fit).
        max_view_side_px: largest side of the camera view, pixels (the GSD is coarsened to
            fit; bounds detection time for high-resolution cameras).
        max_off_nadir_rad: adaptive matching applies to cameras whose optical axis is within
            this angle of straight down (the GSD of a forward camera varies over the image).
        pre_rotate: with a yaw prior, rotate the camera view so that north is up (like the
            patch).
        upright_max_yaw_sigma_rad: a pre-rotated view is declared upright (matchers may drop
            rotation invariance: upright SIFT) when the yaw prior's standard deviation is at
            most this. Off (0) by default: on the real drone frames it localised no more
            frames than rotation-invariant SIFT (docs/EVALUATION.md) and upright SIFT builds
            its pyramid twice (detect, then describe at the fixed orientation). Learned
            matchers always see the rotated view.
    """

    adaptive: bool = param(
        False,
        description="""down-looking cameras: read each aerial patch at the camera's ground
            sampling distance (never finer than the map allows), sized to the camera
            footprint plus the prior's uncertainty, and match the camera image resampled to it
            (north-up with a yaw prior). Needs the camera height (height.ground_elevation_m,
            or the depth provider). False: the fixed patch (patch.*) and the image as it is.""",
        runtime=True,
    )
    max_map_upsample: float = 2.0
    coverage_n_sigma: float = 3.0
    patch_margin_m: float = 5.0
    min_patch_size_px: int = 128
    max_patch_size_px: int = 1024
    max_view_side_px: int = 1280
    max_off_nadir_rad: float = 0.5
    pre_rotate: bool = True
    upright_max_yaw_sigma_rad: float = 0.0

    def __post_init__(self) -> None:
        for name in ("adaptive", "pre_rotate"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ViewConfig.{name} must be a bool")
        if _finite(self, "max_map_upsample") < 1.0:
            raise ValueError("ViewConfig.max_map_upsample must be >= 1")
        _non_negative(self, "coverage_n_sigma")
        _non_negative(self, "patch_margin_m")
        _int_at_least(self, "min_patch_size_px", 16)
        _int_at_least(self, "max_patch_size_px", self.min_patch_size_px)
        _int_at_least(self, "max_view_side_px", 64)
        a = _positive(self, "max_off_nadir_rad")
        if a >= 0.5 * math.pi:
            raise ValueError("ViewConfig.max_off_nadir_rad must be < pi/2")
        _non_negative(self, "upright_max_yaw_sigma_rad")


@dataclass(frozen=True)
class HeightConfig:
    """The camera's height above the ground, from the GNSS altitude, and the scale it implies.

    ``height = fix altitude - ground_elevation_m`` when both are known (the fix altitude and
    the elevation in the same vertical datum). It sets the camera's ground resolution for
    adaptive matching (:class:`ViewConfig`) and bounds the similarity scale: lifted points lie
    on the ground (``height`` below the camera) or on objects at most ``surface_relief_m``
    above it, so the fitted scale is known to within the altitude error and the relief.

    Attributes:
        ground_elevation_m: parameter ``height.ground_elevation_m``.
        altitude_sigma_m: parameter ``height.altitude_sigma_m``.
        surface_relief_m: parameter ``height.surface_relief_m``.
        scale_gate_n_sigma: hypotheses and poses whose scale is more than this many altitude
            sigmas outside the range the height and relief allow are rejected.
        min_height_m: a height below this is treated as unknown (vehicle on the ground, fix
            altitude unusable), metres.
    """

    ground_elevation_m: float = param(
        math.nan,
        description="""terrain elevation under the vehicle, metres, in the fix altitude's
            datum (NavSatFix: WGS84 ellipsoid): camera height = fix altitude - this. It sets
            the matching resolution (view.adaptive) and bounds the similarity scale. NaN =
            unknown (no height from the fix).""",
        range=(-1000.0, 10000.0),
        runtime=True,
    )
    altitude_sigma_m: float = param(
        3.0,
        description="""1-sigma error of the fix altitude minus the elevation, metres
            (consumer GNSS: 2-5; barometric altitude: about 1).""",
        range=(0.01, 1000.0),
        runtime=True,
    )
    surface_relief_m: float = param(
        10.0,
        description="""height above the ground of the highest surfaces matches may lie on
            (trees, roofs), metres: points on them are nearer to the camera, which lowers the
            apparent scale.""",
        range=(0.0, 1000.0),
        runtime=True,
    )
    scale_gate_n_sigma: float = 3.0
    min_height_m: float = 2.0

    def __post_init__(self) -> None:
        check_ranges(self)
        _positive(self, "scale_gate_n_sigma")
        _positive(self, "min_height_m")

    @property
    def enabled(self) -> bool:
        """True when the fix altitude gives a height (a ground elevation is configured)."""
        return math.isfinite(self.ground_elevation_m)


@dataclass(frozen=True)
class LocalizerConfig:
    """Configuration of the :class:`~cvgl_ros.core.localizer.Localizer`.

    Attributes:
        lifting: which lifted points are kept.
        ransac: robust similarity estimation.
        covariance: covariance calibration.
        gating: publication gates.
        patch_reuse: when the current aerial patch is reused for a new prior.
        view: ground-resolution-adaptive matching.
        height: camera height above the ground from the fix altitude.
        keep_debug: attach a :class:`~cvgl_ros.core.types.LocalizationDebug` to each result.
    """

    lifting: LiftingConfig = field(default_factory=LiftingConfig)
    ransac: RansacConfig = field(default_factory=RansacConfig)
    covariance: CovarianceConfig = field(default_factory=CovarianceConfig)
    gating: GatingConfig = field(default_factory=GatingConfig)
    patch_reuse: PatchReuseConfig = field(default_factory=PatchReuseConfig)
    view: ViewConfig = field(default_factory=ViewConfig)
    height: HeightConfig = field(default_factory=HeightConfig)
    keep_debug: bool = True

    def __post_init__(self) -> None:
        for name, cls in (
            ("lifting", LiftingConfig),
            ("ransac", RansacConfig),
            ("covariance", CovarianceConfig),
            ("gating", GatingConfig),
            ("patch_reuse", PatchReuseConfig),
            ("view", ViewConfig),
            ("height", HeightConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"LocalizerConfig.{name} must be a {cls.__name__}")
        if not isinstance(self.keep_debug, bool):
            raise ValueError("LocalizerConfig.keep_debug must be a bool")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LocalizerConfig:
        """Build from ``{"lifting": {...}, "ransac": {...}, ...}``; unknown keys raise.

        Raises:
            ValueError: an unknown section or key, or an invalid value.
        """
        sections: dict[str, type[Any]] = {
            "lifting": LiftingConfig,
            "ransac": RansacConfig,
            "covariance": CovarianceConfig,
            "gating": GatingConfig,
            "patch_reuse": PatchReuseConfig,
            "view": ViewConfig,
            "height": HeightConfig,
        }
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in sections:
                if not isinstance(value, Mapping):
                    raise ValueError(f"LocalizerConfig.{key} must be a mapping")
                kwargs[key] = _build(sections[key], value)
            elif key == "keep_debug":
                kwargs[key] = value
            else:
                raise ValueError(f"unknown LocalizerConfig key {key!r}")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-dict form (inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)


def _build(cls: type[_T], data: Mapping[str, Any]) -> _T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s): {unknown}; known: {sorted(names)}")
    return cls(**dict(data))
