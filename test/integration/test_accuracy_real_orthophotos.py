"""Accuracy on synthetic flights rendered from real orthophotos (classical matcher).

Nadir flights over two different real GeoTIFFs from ``../shared/data``: the median position
error must be far below the GNSS prior's, with most frames localized, and the published
covariance must be honest (NEES consistent with chi-square(3) or conservative, no pose outside
its 3-sigma ellipse). A ground-level run (a forward camera over a *flat* textured ground,
ground-plane depth) must execute end to end and report honest statuses. Numbers are printed
(``pytest -s``) for the README.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cvgl_ros.core.types import PoseStatus
from cvgl_ros.sim.gnss import GnssNoiseConfig
from cvgl_ros.sim.trajectories import TrajectoryConfig
from cvgl_ros.tools.demo import plan_flight
from cvgl_ros.tools.eval import run_eval
from cvgl_ros.tools.replay import replay
from cvgl_ros.tools.synth import CameraSpec, FlightConfig, load_world, synthesize

pytest.importorskip("rosbags")

# The flights are rendered from the very GeoTIFF the node matches against, so the truth has
# no georeferencing error relative to the map: evaluate the covariance without that term.
SAME_MAP_OVERRIDES = ["covariance.map_georef_sigma_m:=0.0"]
# Bounds for 8 frames if the covariance is consistent (chi-square(3) NEES): the mean of 8 NEES
# exceeds 6 with probability 0.3 %; two or more of 8 frames outside the 3-sigma position
# ellipse (2-dof NEES > 9, p = 1.1 % each) has probability 0.4 %; three or more of 8 outside
# the 95 % bound, 0.6 %.
MAX_NEES_MEAN = 6.0
MAX_FALSE_CONFIDENCE = 1.0 / 8.0
MIN_NEES_WITHIN_95 = 0.75

NADIR_MAPS = (
    "spacenet_solaris_samples/pan1.tif",  # Rotterdam, WorldView-2 panchromatic 0.5 m/px
    "spacenet_solaris_samples/sample_geotiff.tif",  # Atlanta, suburban forest 0.5 m/px
)


def _map(shared_data: Path, rel: str) -> Path:
    path = shared_data / rel
    if not path.is_file():
        pytest.skip(f"{rel} not in shared data")
    return path


@pytest.mark.parametrize("rel", NADIR_MAPS)
def test_nadir_flight_beats_gnss_prior(shared_data: Path, tmp_path: Path, rel: str) -> None:
    tif = _map(shared_data, rel)
    world = load_world(str(tif))
    cfg = plan_flight(world, frames=8, seed=1)
    res = synthesize(world, cfg, tmp_path, map_label=rel, map_source=str(tif))
    assert res.mean_coverage > 0.9
    rep = replay(
        res.bag_path, tmp_path / "params.yaml", tmp_path / "replay", overrides=SAME_MAP_OVERRIDES
    )
    ev = run_eval(tmp_path / "replay" / "poses.csv", res.truth_csv)
    est, prior = ev.estimate, ev.prior
    assert prior is not None
    print(
        f"\n{rel}: altitude {cfg.camera.altitude_m:.0f} m, availability "
        f"{100 * est.availability:.0f} %, median error {est.error_median_m:.2f} m "
        f"(p95 {est.error_p95_m:.2f} m) vs GNSS prior {prior.error_median_m:.2f} m; "
        f"NEES mean {est.nees_mean:.2f}, {100 * est.nees_within_95:.0f} % inside the chi2(3) "
        f"95 % bound, false confidence {100 * est.false_confidence_rate:.0f} %; "
        f"statuses {rep.summary['status_counts']}"
    )
    assert est.availability >= 0.75
    assert est.error_median_m < 0.2 * prior.error_median_m
    assert est.error_median_m < 1.0
    assert est.yaw_error_median_deg < 2.0
    # Honest covariance: a precise-looking pose that is off is the worst output (DESIGN 7).
    assert est.false_confidence_rate <= MAX_FALSE_CONFIDENCE, est
    assert est.nees_mean <= MAX_NEES_MEAN, est
    assert est.nees_within_95 >= MIN_NEES_WITHIN_95, est


def test_ground_level_run_reports_honest_statuses(shared_data: Path, tmp_path: Path) -> None:
    tif = _map(shared_data, "riotiler_fixture_orthos/pix4d_bali_ricefields_0p35m.tif")
    world = load_world(str(tif))
    cfg = FlightConfig(
        camera=CameraSpec(
            kind="ground", width_px=640, height_px=480, hfov_deg=90.0, camera_height_m=1.6,
            tilt_down_deg=20.0, jitter_deg=0.5,
        ),
        trajectory=TrajectoryConfig(
            kind="straight", num_frames=6, speed_m_per_s=2.0, heading_rad=0.7
        ),
        gnss=GnssNoiseConfig(seed=5),
    )  # fmt: skip
    res = synthesize(world, cfg, tmp_path, map_label="bali", map_source=str(tif))
    rep = replay(res.bag_path, tmp_path / "params.yaml", tmp_path / "replay")
    ev = run_eval(tmp_path / "replay" / "poses.csv", res.truth_csv)
    print(
        f"\nground-level (flat-ground simplification) over bali: statuses "
        f"{rep.summary['status_counts']}, availability {100 * ev.estimate.availability:.0f} %, "
        f"median error {ev.estimate.error_median_m:.2f} m vs prior "
        f"{ev.prior.error_median_m if ev.prior else math.nan:.2f} m"
    )
    assert len(rep.records) == 6
    valid = {s.value for s in PoseStatus}
    for rec in rep.records:
        e = rec.estimate
        assert e.status.value in valid
        # Every frame ran the pipeline: no crash-type "error", and failures say why.
        assert e.status is not PoseStatus.ERROR, e.reasons
        if e.ok:
            assert math.isfinite(e.lat_deg) and e.inliers >= 12
        else:
            assert e.reasons and all(r.strip() for r in e.reasons)
    # A published pose that is far off must not claim to be precise.
    assert ev.estimate.ok == 0 or ev.estimate.false_confidence_rate <= 0.5
