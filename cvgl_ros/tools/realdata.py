"""Real camera frames against real orthophotos, scored beside the OpenCV peer.

The one evaluation here where the map is not a rendering of the camera image: the real drone
frames of ``../shared/data/odm_minnesota_dev`` (7 DJI frames with photogrammetric poses, two
orthophotos of the site from different processing runs). :func:`evaluate_real_frames` imports
the frames into bags (:mod:`cvgl_ros.tools.import_frames`, several GNSS-error seeds, with and
without a heading sensor), replays each bag through the node's pipeline with a parameter file
(the drone preset by default) against each orthophoto, runs the OpenCV peer
(:mod:`cvgl_ros.tools.benchmarks.opencv_peer`) on the same bags, and scores both with
``cvgl-ros eval``. Used by the ``realframes`` benchmark suite and the real-data test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvgl_ros.tools.eval import FrameErrors, Metrics, format_metric, run_eval, summarize

LOGGER = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# The drone preset shipped with the package (the default configuration evaluated).
DRONE_PRESET = REPO_ROOT / "config" / "drone_nadir.yaml"


def shared_data_dir() -> Path:
    """``$CVGL_SHARED_DATA`` or ``../shared/data`` next to the repository."""
    return Path(os.environ.get("CVGL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class RealFrameSet:
    """A folder of real frames with truth, and the orthophotos to match them against.

    Attributes:
        name: label.
        frames_dir: the frames.
        truth_csv: truth CSV (:mod:`cvgl_ros.tools.import_frames` format).
        orthophotos: GeoTIFFs of the site.
        ground_elevation_m: terrain elevation in the truth altitude's datum, metres.
    """

    name: str
    frames_dir: Path
    truth_csv: Path
    orthophotos: tuple[Path, ...]
    ground_elevation_m: float


def odm_minnesota_dev(root: Path | None = None) -> RealFrameSet | None:
    """The ODM Minnesota dev set, or None when ``../shared/data`` does not hold it.

    Its ground elevation, 161.84 m, is the median altitude of the survey's 3-D points (the
    set's SOURCE.txt).
    """
    base = (root or shared_data_dir()) / "odm_minnesota_dev"
    orthos = (
        base / "orthophotos" / "odm_result1_0.30m_utm15n.tif",
        base / "orthophotos" / "webodm_fixture_0.50m.tif",
    )
    truth = base / "ground_truth.csv"
    if not (truth.is_file() and all(p.is_file() for p in orthos)):
        return None
    return RealFrameSet("odm_minnesota_dev", base / "frames", truth, orthos, 161.84)


@dataclass(frozen=True)
class MethodScore:
    """One method's scores over all runs of one (orthophoto, heading) condition.

    Attributes:
        metrics: eval metrics over every frame of every seed.
        errors_m: (N,) horizontal error per frame (NaN where no pose), seeds concatenated.
    """

    metrics: Metrics
    errors_m: np.ndarray


@dataclass(frozen=True)
class ConditionScore:
    """cvgl_ros and the peer on one orthophoto, with or without a heading sensor.

    Attributes:
        orthophoto: file name.
        heading_sigma_deg: heading sensor noise, degrees (None: no heading).
        ours: the node's pipeline with the evaluated configuration.
        peer: the OpenCV peer.
    """

    orthophoto: str
    heading_sigma_deg: float | None
    ours: MethodScore
    peer: MethodScore

    @property
    def paired_median_m(self) -> tuple[float, float, int]:
        """(ours, peer) median error over frames both localised, and their number."""
        both = np.isfinite(self.ours.errors_m) & np.isfinite(self.peer.errors_m)
        if not np.any(both):
            return float("nan"), float("nan"), 0
        return (
            float(np.median(self.ours.errors_m[both])),
            float(np.median(self.peer.errors_m[both])),
            int(both.sum()),
        )


@dataclass
class RealFramesReport:
    """Everything :func:`evaluate_real_frames` measured.

    Attributes:
        dataset: the frame set's name.
        seeds: GNSS-error seeds (one bag each per heading condition).
        conditions: one score per (orthophoto, heading).
        config: the parameter file evaluated.
        overrides: parameter overrides applied.
    """

    dataset: str
    seeds: tuple[int, ...]
    conditions: list[ConditionScore] = field(default_factory=list)
    config: str = ""
    overrides: tuple[str, ...] = ()


def _concat(frames: Sequence[FrameErrors]) -> FrameErrors:
    return FrameErrors(
        stamp_s=np.concatenate([f.stamp_s for f in frames]),
        ok=np.concatenate([f.ok for f in frames]),
        error_en_m=np.concatenate([f.error_en_m for f in frames]),
        error_m=np.concatenate([f.error_m for f in frames]),
        yaw_error_rad=np.concatenate([f.yaw_error_rad for f in frames]),
        nees=np.concatenate([f.nees for f in frames]),
        nees_position=np.concatenate([f.nees_position for f in frames]),
    )


def _score(frames: Sequence[FrameErrors]) -> MethodScore:
    fe = _concat(frames)
    errors = np.where(fe.ok, fe.error_m, np.nan)
    return MethodScore(summarize(fe, int(fe.ok.size), 3), errors)


def evaluate_real_frames(
    dataset: RealFrameSet,
    work_dir: str | Path,
    *,
    seeds: Sequence[int] = (1, 2, 3),
    heading_sigmas_deg: Sequence[float | None] = (None, 5.0),
    config: str | Path = DRONE_PRESET,
    overrides: Sequence[str] = (),
) -> RealFramesReport:
    """Import, replay, run the peer and score, for every seed, heading and orthophoto.

    Args:
        dataset: the frames and orthophotos.
        work_dir: where bags and outputs go (created).
        seeds: GNSS prior seeds (truth + a per-seed bias of N(0, 3.5 m) per axis + 1 m noise,
            reported sigma 5 m; altitude + 1.5 m noise).
        heading_sigmas_deg: heading sensor conditions (None: no heading; else an Imu with
            the true yaw plus this much noise, used as the yaw prior).
        config: node parameter file evaluated.
        overrides: extra ``name:=value`` parameters.

    Returns:
        The report.
    """
    from cvgl_ros.tools.benchmarks.opencv_peer import run_peer
    from cvgl_ros.tools.import_frames import PriorConfig, import_frames
    from cvgl_ros.tools.replay import replay

    work = Path(work_dir)
    report = RealFramesReport(dataset.name, tuple(seeds), [], str(config), tuple(overrides))
    for heading in heading_sigmas_deg:
        per_ortho: dict[str, tuple[list[FrameErrors], list[FrameErrors]]] = {}
        for seed in seeds:
            tag = f"seed{seed}" + ("" if heading is None else f"_heading{heading:g}")
            imported = import_frames(
                dataset.frames_dir,
                dataset.truth_csv,
                work / tag,
                PriorConfig(kind="truth", seed=seed),
                heading_sigma_deg=heading,
            )
            sets = [
                f"height.ground_elevation_m:={dataset.ground_elevation_m}",
                *overrides,
            ]
            if heading is not None:
                sets += ["use_imu:=true", "use_imu_yaw:=true"]
            for ortho in dataset.orthophotos:
                out = work / tag / ortho.stem
                replay(
                    imported.bag_path,
                    config,
                    out / "cvgl_ros",
                    map_source=str(ortho),
                    overrides=sets,
                )
                run_peer(imported.bag_path, ortho, out / "opencv_peer")
                ours = run_eval(out / "cvgl_ros" / "poses.csv", imported.truth_csv)
                peer = run_eval(out / "opencv_peer" / "poses.csv", imported.truth_csv)
                lists = per_ortho.setdefault(ortho.name, ([], []))
                lists[0].append(ours.estimate_frames)
                lists[1].append(peer.estimate_frames)
        for name, (ours_f, peer_f) in per_ortho.items():
            report.conditions.append(ConditionScore(name, heading, _score(ours_f), _score(peer_f)))
    return report


def report_table(report: RealFramesReport) -> str:
    """Markdown table: one row per (orthophoto, heading, method)."""
    lines = [
        "| orthophoto | heading prior | method | localised (ok / frames) | median error m | "
        "p95 error m | paired median m (n) | median yaw error deg | false-confident "
        "(n / with cov.) | NEES inside chi2(3) 95 % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report.conditions:
        po, pp, n = c.paired_median_m
        for label, score, paired in (("cvgl_ros", c.ours, po), ("OpenCV peer", c.peer, pp)):
            m = score.metrics
            heading = "none" if c.heading_sigma_deg is None else f"{c.heading_sigma_deg:g} deg"
            fc = (
                f"{m.false_confident} / {m.with_covariance}"
                if m.with_covariance
                else "- (no cov.)"
            )
            nees = (
                f"{m.nees_inside_95} / {m.with_covariance} ({100 * m.nees_within_95:.0f} %)"
                if m.with_covariance
                else "-"
            )
            lines.append(
                f"| {c.orthophoto} | {heading} | {label} | {m.ok} / {m.frames} | "
                f"{format_metric(m.error_median_m)} | {format_metric(m.error_p95_m)} | "
                f"{format_metric(paired)} ({n}) | "
                f"{format_metric(m.yaw_error_median_deg)} | {fc} | {nees} |"
            )
    return "\n".join(lines)
