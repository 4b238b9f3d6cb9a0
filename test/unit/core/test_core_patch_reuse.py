"""Localizer patch reuse: when the current patch serves a new prior, and that the pose is the
same (in the map frame) whether the patch was reused or built at the prior."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.camera import PinholeCamera
from cvgl_ros.core.config import LocalizerConfig, PatchReuseConfig
from cvgl_ros.core.depth import ConstantRangeDepth
from cvgl_ros.core.errors import NoImageryError
from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.localizer import Localizer
from cvgl_ros.core.mount import gravity_from_camera_for_mount
from cvgl_ros.core.types import (
    AerialPatch,
    Correspondences,
    FloatArray,
    GnssPrior,
    PoseEstimate,
    PoseStatus,
    UInt8Array,
)

WORLD = LocalEnu(47.3769, 8.5417)
CAM = PinholeCamera(640, 480, 400.0, 400.0, 319.5, 239.5)
IMAGE = np.zeros((480, 640, 3), dtype=np.uint8)
GRAVITY = gravity_from_camera_for_mount("nadir")
ALTITUDE_M = 50.0
# 512 px at 0.5 m/px: half-extent 128 m; the default fraction 0.25 allows 32 m of offset.
PATCH_SIZE_PX = 512
PATCH_M_PER_PX = 0.5


class CountingPatchSource:
    """Test double: a blank north-up patch centred on the request; counts the calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.centres: list[tuple[float, float]] = []
        self.fail = False

    def patch_at(self, lat_deg: float, lon_deg: float) -> AerialPatch:
        self.calls += 1
        if self.fail:
            raise NoImageryError("outside coverage")
        self.centres.append((lat_deg, lon_deg))
        return AerialPatch(
            image=np.zeros((PATCH_SIZE_PX, PATCH_SIZE_PX, 3), dtype=np.uint8),
            m_per_px=PATCH_M_PER_PX,
            center_lat_deg=lat_deg,
            center_lon_deg=lon_deg,
            valid_mask=np.ones((PATCH_SIZE_PX, PATCH_SIZE_PX), dtype=bool),
            source_id="grid",
        )


@dataclass
class SceneMatcher:
    """Test double: noisy correct correspondences of a nadir view at a known pose + outliers.

    The noise is drawn in world metres from a fixed seed, so every patch (wherever its centre)
    sees the same geometry.
    """

    camera_world_en_m: FloatArray
    yaw_enu_rad: float
    seed: int = 0

    def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
        rng = np.random.default_rng(self.seed)
        n = 200
        px = np.stack([rng.uniform(0, 639, n), rng.uniform(0, 479, n)], axis=1)
        planar = ALTITUDE_M * np.stack(
            [-(px[:, 1] - CAM.cy_px) / CAM.fy_px, -(px[:, 0] - CAM.cx_px) / CAM.fx_px], axis=1
        )
        c, s = math.cos(self.yaw_enu_rad), math.sin(self.yaw_enu_rad)
        world_en = planar @ np.array([[c, -s], [s, c]]).T + self.camera_world_en_m
        world_en += rng.normal(0.0, 0.3, world_en.shape)
        out = rng.random(n) < 0.3
        world_en[out] += rng.uniform(-60.0, 60.0, (int(out.sum()), 2))
        # World metres -> this patch's pixels through WGS84 (exact for any patch centre).
        lat, lon = WORLD.to_wgs84(world_en[:, 0], world_en[:, 1])
        e, nn = LocalEnu(patch.center_lat_deg, patch.center_lon_deg).to_en(lat, lon)
        aerial_px = patch.en_to_pixel(np.stack([e, nn], axis=1))
        weights = np.where(out, rng.uniform(0.0, 0.6, n), rng.uniform(0.4, 1.0, n))
        return Correspondences(px, aerial_px, weights)


def _prior(world_en: FloatArray, sigma_m: float = 10.0, stamp_s: float = 0.0) -> GnssPrior:
    lat, lon = WORLD.to_wgs84(world_en[0], world_en[1])
    return GnssPrior(float(lat), float(lon), np.eye(2) * sigma_m**2, stamp_s=stamp_s)


def _localizer(
    matcher: SceneMatcher, reuse: PatchReuseConfig | None = None
) -> tuple[Localizer, CountingPatchSource]:
    source = CountingPatchSource()
    cfg = LocalizerConfig(patch_reuse=reuse or PatchReuseConfig())
    return Localizer(cfg, matcher, ConstantRangeDepth(ALTITUDE_M), source, WORLD), source


def _run(loc: Localizer, prior: GnssPrior, stamp_s: float) -> PoseEstimate:
    return loc.localize(IMAGE, CAM, prior, GRAVITY, stamp_s)


def test_patch_reused_near_its_centre_and_rebuilt_beyond_the_margin() -> None:
    truth = np.array([10.0, -5.0])
    loc, source = _localizer(SceneMatcher(truth, 0.7))
    first = _run(loc, _prior(truth), 0.0)
    assert first.ok and source.calls == 1
    # 20 m from the patch centre (< 0.25 * 128 m): reused, the pose is still right.
    second = _run(loc, _prior(truth + np.array([12.0, 16.0])), 0.1)
    assert second.ok and source.calls == 1
    assert loc.patch_stats() == {"built": 1, "reused": 1}
    assert second.debug is not None and second.debug.patch is first.debug.patch  # type: ignore[union-attr]
    assert math.hypot(second.east_m - truth[0], second.north_m - truth[1]) < 0.3
    # The camera position in the reused patch's frame is relative to that patch's centre.
    assert second.debug is not None and second.debug.patch_from_camera is not None
    np.testing.assert_allclose(second.debug.patch_from_camera[:2, 2], [0.0, 0.0], atol=0.3)
    # 40 m from the centre: a new patch centred on this prior.
    third = _run(loc, _prior(truth + np.array([40.0, 0.0])), 0.2)
    assert third.ok and source.calls == 2
    lat, lon = WORLD.to_wgs84(truth[0] + 40.0, truth[1])
    assert source.centres[-1] == pytest.approx((float(lat), float(lon)))
    assert third.debug is not None and third.debug.patch_from_camera is not None
    np.testing.assert_allclose(third.debug.patch_from_camera[:2, 2], [-40.0, 0.0], atol=0.3)
    assert loc.patch_stats() == {"built": 2, "reused": 1}


def test_uncertain_prior_gets_a_fresh_patch() -> None:
    truth = np.array([0.0, 0.0])
    loc, source = _localizer(SceneMatcher(truth, 0.2))
    assert _run(loc, _prior(truth, sigma_m=5.0), 0.0).ok
    # 10 m offset is within the margin, but 10 + 3 sigma = 130 m reaches beyond the 128 m edge.
    _run(loc, _prior(truth + np.array([10.0, 0.0]), sigma_m=40.0), 0.1)
    assert source.calls == 2
    # A prior whose 3-sigma disc fits again reuses the (new) patch.
    _run(loc, _prior(truth + np.array([15.0, 0.0]), sigma_m=5.0), 0.2)
    assert source.calls == 2
    # The largest axis of an elongated covariance counts.
    loc_b, source_b = _localizer(SceneMatcher(truth, 0.2))
    _run(loc_b, _prior(truth), 0.0)
    cov = np.diag([1.0, 39.0**2])
    lat, lon = WORLD.to_wgs84(12.0, 0.0)
    loc_b.localize(IMAGE, CAM, GnssPrior(float(lat), float(lon), cov), GRAVITY, 0.1)
    assert source_b.calls == 2


def test_old_patch_or_stamp_going_backwards_rebuilds() -> None:
    truth = np.array([0.0, 0.0])
    loc, source = _localizer(SceneMatcher(truth, 0.2), PatchReuseConfig(max_age_s=1.0))
    _run(loc, _prior(truth), 10.0)
    _run(loc, _prior(truth), 10.9)
    assert source.calls == 1
    _run(loc, _prior(truth), 11.5)  # 1.5 s after the patch was built
    assert source.calls == 2
    _run(loc, _prior(truth), 11.0)  # the clock went backwards (bag loop)
    assert source.calls == 3


def test_reuse_off_builds_a_patch_for_every_prior() -> None:
    truth = np.array([0.0, 0.0])
    loc, source = _localizer(SceneMatcher(truth, 0.2), PatchReuseConfig(max_offset_fraction=0))
    for k in range(3):
        assert _run(loc, _prior(truth + np.array([0.5 * k, 0.0])), 0.1 * k).ok
    assert source.calls == 3
    assert loc.patch_stats() == {"built": 3, "reused": 0}


def test_no_imagery_is_reported_and_forgets_the_patch() -> None:
    truth = np.array([0.0, 0.0])
    loc, source = _localizer(SceneMatcher(truth, 0.2))
    assert _run(loc, _prior(truth), 0.0).ok
    source.fail = True
    far = _run(loc, _prior(truth + np.array([100.0, 0.0])), 0.1)
    assert far.status is PoseStatus.NO_IMAGERY
    source.fail = False
    # Back near the first patch: it was forgotten, so a new one is built.
    assert _run(loc, _prior(truth), 0.2).ok
    assert source.calls == 3
    loc.reset_patch()
    assert _run(loc, _prior(truth), 0.3).ok
    assert source.calls == 4


@settings(max_examples=15, deadline=None)
@given(
    offset_e=st.floats(-22.0, 22.0),
    offset_n=st.floats(-22.0, 22.0),
    yaw=st.floats(-math.pi, math.pi),
)
def test_pose_is_the_same_with_and_without_reuse(
    offset_e: float, offset_n: float, yaw: float
) -> None:
    truth = np.array([30.0, -20.0])
    prior_en = truth + np.array([offset_e, offset_n])
    reused, source = _localizer(SceneMatcher(truth, yaw))
    _run(reused, _prior(truth), 0.0)  # builds the patch at the first prior
    a = _run(reused, _prior(prior_en), 0.1)
    assert source.calls == 1  # within 0.25 * 128 m = 32 m
    fresh, _ = _localizer(SceneMatcher(truth, yaw), PatchReuseConfig(max_offset_fraction=0.0))
    b = _run(fresh, _prior(prior_en), 0.1)
    assert a.ok and b.ok
    assert math.hypot(a.east_m - b.east_m, a.north_m - b.north_m) < 0.05
    assert abs(math.remainder(a.yaw_enu_rad - b.yaw_enu_rad, math.tau)) < 1e-3
    np.testing.assert_allclose(a.cov_en_yaw, b.cov_en_yaw, rtol=0.2, atol=1e-6)
    assert a.lat_deg == pytest.approx(b.lat_deg, abs=1e-6)
    assert a.lon_deg == pytest.approx(b.lon_deg, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_offset_fraction": 1.0}, "max_offset_fraction"),
        ({"max_offset_fraction": -0.1}, "max_offset_fraction"),
        ({"max_offset_fraction": math.nan}, "max_offset_fraction"),
        ({"coverage_n_sigma": -1.0}, "coverage_n_sigma"),
        ({"max_age_s": 0.0}, "max_age_s"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PatchReuseConfig(**kwargs)


def test_config_round_trips_through_dicts() -> None:
    cfg = LocalizerConfig.from_dict({"patch_reuse": {"max_offset_fraction": 0.1}})
    assert cfg.patch_reuse == PatchReuseConfig(max_offset_fraction=0.1)
    assert LocalizerConfig.from_dict(cfg.to_dict()) == cfg
    assert not PatchReuseConfig(max_offset_fraction=0.0).enabled
    with pytest.raises(ValueError, match="unknown PatchReuseConfig"):
        LocalizerConfig.from_dict({"patch_reuse": {"snap_m": 1.0}})
    with pytest.raises(ValueError, match="patch_reuse"):
        LocalizerConfig(patch_reuse={"max_offset_fraction": 0.1})  # type: ignore[arg-type]
