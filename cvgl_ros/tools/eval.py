"""``cvgl-ros eval``: accuracy, availability and covariance consistency of replayed poses.

Inputs: ``poses.csv`` written by ``cvgl-ros replay`` (columns :data:`POSE_COLUMNS`), a truth
CSV (``stamp_ns,lat_deg,lon_deg,yaw_enu_rad``) and, as the baseline, the raw GNSS prior the
replay saw (``prior.csv`` next to ``poses.csv``, columns :data:`PRIOR_COLUMNS`).

Metrics (computed in a local ENU frame at the first truth point):

- availability: share of frames with an ``ok`` pose;
- position error of ok poses (mean, median, p95, max), metres;
- recall at 1 / 3 / 5 m: share of *all* frames with an ok pose within that distance (a frame
  without a pose counts as a miss, so recall never rewards refusing to answer);
- yaw error of ok poses (mean, median, p95), degrees;
- NEES (normalised estimation error squared) of (east, north, yaw) with the published
  covariance: mean (3 for a consistent estimator) and share inside the 95 % chi-square(3)
  bound; the position-only NEES against chi-square(2) too;
- false-confidence rate: share of ok poses whose position error lies outside their 3-sigma
  ellipse (Mahalanobis distance > 3) -- a bad pose with a tight covariance is the worst output.

The same metrics (without yaw) are computed for the GNSS prior.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.types import BoolArray, FloatArray

IntArray = npt.NDArray[np.int64]

LOGGER = logging.getLogger(__name__)

POSE_COLUMNS: tuple[str, ...] = (
    "stamp_ns",
    "status",
    "lat_deg",
    "lon_deg",
    "east_m",
    "north_m",
    "yaw_enu_rad",
    "var_east_m2",
    "cov_east_north_m2",
    "var_north_m2",
    "var_yaw_rad2",
    "inliers",
    "inlier_ratio",
    "latency_ms",
)
"""Columns of ``poses.csv``, in order (the replay writes exactly these)."""

PRIOR_COLUMNS: tuple[str, ...] = (
    "stamp_ns",
    "status",
    "lat_deg",
    "lon_deg",
    "var_east_m2",
    "cov_east_north_m2",
    "var_north_m2",
    "age_s",
)
"""Columns of ``prior.csv``: the latest GNSS fix at or before each image (``status`` is ``ok``
or why there was none)."""

TRUTH_COLUMNS: tuple[str, ...] = ("stamp_ns", "lat_deg", "lon_deg", "yaw_enu_rad")

CHI2_3DOF_95 = 7.814727903251178
CHI2_2DOF_95 = 5.991464547107979
RECALL_THRESHOLDS_M: tuple[float, ...] = (1.0, 3.0, 5.0)
# Truth is matched to a frame when their stamps differ by at most this (else interpolated).
_STAMP_MATCH_NS = 1_000_000


class EvalError(ValueError):
    """An input file is missing columns, empty, or does not overlap the truth."""


# --------------------------------------------------------------------------- tables


def _read_csv(path: str | Path, required: tuple[str, ...]) -> dict[str, list[str]]:
    p = Path(path)
    if not p.is_file():
        raise EvalError(f"{p}: file not found")
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = tuple(reader.fieldnames or ())
        missing = [c for c in required if c not in header]
        if missing:
            raise EvalError(f"{p}: missing columns {missing} (has {list(header)})")
        cols: dict[str, list[str]] = {c: [] for c in header}
        for row in reader:
            for c in header:
                cols[c].append(row[c] or "")
    return cols


def _floats(values: list[str]) -> FloatArray:
    return np.array([float(v) if v.strip() else math.nan for v in values], dtype=np.float64)


def _stamps_ns(values: list[str]) -> IntArray:
    return np.array([int(v) for v in values], dtype=np.int64)


def _statuses(values: list[str]) -> tuple[str, ...]:
    return tuple(s.strip() for s in values)


def _status_ok(status: tuple[str, ...]) -> BoolArray:
    return np.array([s == "ok" for s in status], dtype=bool)


def _cov_en_m2(c: dict[str, list[str]]) -> FloatArray:
    """(N, 2, 2) east/north covariances from the ``var_east_m2``, ``var_north_m2`` and
    ``cov_east_north_m2`` columns (NaN where empty)."""
    cov = np.full((len(c["stamp_ns"]), 2, 2), np.nan)
    cov[:, 0, 0] = _floats(c["var_east_m2"])
    cov[:, 1, 1] = _floats(c["var_north_m2"])
    cov[:, 0, 1] = cov[:, 1, 0] = _floats(c["cov_east_north_m2"])
    return cov


@dataclass(frozen=True)
class PoseTable:
    """``poses.csv`` as arrays (N frames; NaN where a field is empty)."""

    stamp_ns: IntArray
    status: tuple[str, ...]
    lat_deg: FloatArray
    lon_deg: FloatArray
    yaw_enu_rad: FloatArray
    cov_en_m2: FloatArray  # (N, 2, 2)
    var_yaw_rad2: FloatArray
    inliers: FloatArray
    inlier_ratio: FloatArray
    latency_ms: FloatArray

    @property
    def ok(self) -> BoolArray:
        """(N,) bool, True for frames with a published pose."""
        return _status_ok(self.status)


def load_poses(path: str | Path) -> PoseTable:
    """Read ``poses.csv``.

    Raises:
        EvalError: missing file or columns.
    """
    c = _read_csv(path, POSE_COLUMNS)
    return PoseTable(
        stamp_ns=_stamps_ns(c["stamp_ns"]),
        status=_statuses(c["status"]),
        lat_deg=_floats(c["lat_deg"]),
        lon_deg=_floats(c["lon_deg"]),
        yaw_enu_rad=_floats(c["yaw_enu_rad"]),
        cov_en_m2=_cov_en_m2(c),
        var_yaw_rad2=_floats(c["var_yaw_rad2"]),
        inliers=_floats(c["inliers"]),
        inlier_ratio=_floats(c["inlier_ratio"]),
        latency_ms=_floats(c["latency_ms"]),
    )


@dataclass(frozen=True)
class PriorTable:
    """``prior.csv`` as arrays."""

    stamp_ns: IntArray
    status: tuple[str, ...]
    lat_deg: FloatArray
    lon_deg: FloatArray
    cov_en_m2: FloatArray  # (N, 2, 2)

    @property
    def ok(self) -> BoolArray:
        """(N,) bool, True where a fix was available."""
        return _status_ok(self.status)


def load_prior(path: str | Path) -> PriorTable:
    """Read ``prior.csv``.

    Raises:
        EvalError: missing file or columns.
    """
    c = _read_csv(path, PRIOR_COLUMNS[:7])
    return PriorTable(
        stamp_ns=_stamps_ns(c["stamp_ns"]),
        status=_statuses(c["status"]),
        lat_deg=_floats(c["lat_deg"]),
        lon_deg=_floats(c["lon_deg"]),
        cov_en_m2=_cov_en_m2(c),
    )


@dataclass(frozen=True)
class TruthTable:
    """Truth CSV as arrays, sorted by stamp."""

    stamp_ns: IntArray
    lat_deg: FloatArray
    lon_deg: FloatArray
    yaw_enu_rad: FloatArray


def load_truth(path: str | Path) -> TruthTable:
    """Read a truth CSV (``stamp_ns,lat_deg,lon_deg,yaw_enu_rad``).

    Raises:
        EvalError: missing file or columns, or no rows.
    """
    c = _read_csv(path, TRUTH_COLUMNS)
    stamps = _stamps_ns(c["stamp_ns"])
    if len(stamps) == 0:
        raise EvalError(f"{path}: no truth rows")
    order = np.argsort(stamps, kind="stable")
    return TruthTable(
        stamp_ns=stamps[order],
        lat_deg=_floats(c["lat_deg"])[order],
        lon_deg=_floats(c["lon_deg"])[order],
        yaw_enu_rad=_floats(c["yaw_enu_rad"])[order],
    )


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metrics:
    """Summary metrics of one estimator (the localizer, or the GNSS prior baseline).

    Attributes:
        frames: frames evaluated (with truth).
        ok: frames with an output.
        availability: ok / frames.
        error_mean_m, error_median_m, error_p95_m, error_max_m: horizontal position error of
            ok outputs, metres (NaN when none).
        recall_1m, recall_3m, recall_5m: share of all frames with an ok output within 1/3/5 m.
        yaw_error_mean_deg, yaw_error_median_deg, yaw_error_p95_deg: absolute yaw error of ok
            outputs, degrees (NaN for the prior, which has no yaw).
        nees_mean: mean NEES (3-dof with yaw, 2-dof for the prior).
        nees_dof: degrees of freedom of ``nees_mean``.
        nees_within_95: share of ok outputs whose NEES lies inside the chi-square 95 % bound.
        nees_position_mean: mean 2-dof position NEES.
        false_confidence_rate: share of ok outputs outside their 3-sigma position ellipse.
        with_covariance: ok outputs that carry a covariance (NEES and false confidence are
            computed over these).
        nees_inside_95: how many of them lie inside the chi-square 95 % bound.
        false_confident: how many of them lie outside their 3-sigma position ellipse.
    """

    frames: int
    ok: int
    availability: float
    error_mean_m: float
    error_median_m: float
    error_p95_m: float
    error_max_m: float
    recall_1m: float
    recall_3m: float
    recall_5m: float
    yaw_error_mean_deg: float
    yaw_error_median_deg: float
    yaw_error_p95_deg: float
    nees_mean: float
    nees_dof: int
    nees_within_95: float
    nees_position_mean: float
    false_confidence_rate: float
    with_covariance: int = 0
    nees_inside_95: int = 0
    false_confident: int = 0


@dataclass(frozen=True)
class FrameErrors:
    """Per-frame errors (N frames, NaN where there was no output)."""

    stamp_s: FloatArray
    ok: BoolArray
    error_en_m: FloatArray  # (N, 2) estimate - truth
    error_m: FloatArray
    yaw_error_rad: FloatArray
    nees: FloatArray
    nees_position: FloatArray


def _nanstat(fn: Any, x: FloatArray) -> float:
    return float(fn(x)) if len(x) else math.nan


def _position_nees(err_en: FloatArray, cov: FloatArray) -> FloatArray:
    out = np.full(len(err_en), np.nan)
    for i in range(len(err_en)):
        c = cov[i]
        if np.all(np.isfinite(c)) and np.all(np.isfinite(err_en[i])) and np.linalg.det(c) > 0:
            out[i] = float(err_en[i] @ np.linalg.solve(c, err_en[i]))
    return out


def truth_at(
    truth: TruthTable, stamps_ns: IntArray, enu: LocalEnu
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Truth (east, north) and yaw at the given stamps.

    Exact stamp matches are used as they are; other stamps inside the truth's time span are
    interpolated linearly (yaw on the circle); stamps outside it have no truth.

    Returns:
        ((N, 2) metres, (N,) radians, (N,) bool has-truth).
    """
    te, tn = enu.to_en(truth.lat_deg, truth.lon_deg)
    ts = truth.stamp_ns.astype(np.float64)
    q = np.asarray(stamps_ns, dtype=np.int64)
    qf = q.astype(np.float64)
    inside = (q >= truth.stamp_ns[0] - _STAMP_MATCH_NS) & (
        q <= truth.stamp_ns[-1] + _STAMP_MATCH_NS
    )
    en = np.stack([np.interp(qf, ts, te), np.interp(qf, ts, tn)], axis=1)
    c = np.interp(qf, ts, np.cos(truth.yaw_enu_rad))
    s = np.interp(qf, ts, np.sin(truth.yaw_enu_rad))
    return en, np.arctan2(s, c), inside


def frame_errors(poses: PoseTable, truth: TruthTable, enu: LocalEnu) -> FrameErrors:
    """Per-frame errors of the localizer's poses against the truth."""
    t_en, t_yaw, has = truth_at(truth, poses.stamp_ns, enu)
    ok = poses.ok & has & np.isfinite(poses.lat_deg) & np.isfinite(poses.lon_deg)
    est = np.full((len(ok), 2), np.nan)
    if np.any(ok):
        e, n = enu.to_en(poses.lat_deg[ok], poses.lon_deg[ok])
        est[ok] = np.stack([e, n], axis=1)
    err = est - t_en
    dyaw = np.full(len(ok), np.nan)
    dyaw[ok] = np.angle(np.exp(1j * (poses.yaw_enu_rad[ok] - t_yaw[ok])))
    nees_pos = _position_nees(err, poses.cov_en_m2)
    nees = nees_pos + np.where(poses.var_yaw_rad2 > 0, dyaw**2 / poses.var_yaw_rad2, np.nan)
    nees[~ok] = np.nan
    nees_pos[~ok] = np.nan
    return FrameErrors(
        stamp_s=poses.stamp_ns.astype(np.float64) * 1e-9,
        ok=ok,
        error_en_m=err,
        error_m=np.hypot(err[:, 0], err[:, 1]),
        yaw_error_rad=dyaw,
        nees=nees,
        nees_position=nees_pos,
    )


def prior_errors(prior: PriorTable, truth: TruthTable, enu: LocalEnu) -> FrameErrors:
    """Per-frame errors of the raw GNSS prior against the truth."""
    t_en, _, has = truth_at(truth, prior.stamp_ns, enu)
    ok = prior.ok & has & np.isfinite(prior.lat_deg) & np.isfinite(prior.lon_deg)
    est = np.full((len(ok), 2), np.nan)
    if np.any(ok):
        e, n = enu.to_en(prior.lat_deg[ok], prior.lon_deg[ok])
        est[ok] = np.stack([e, n], axis=1)
    err = est - t_en
    nees_pos = _position_nees(err, prior.cov_en_m2)
    nees_pos[~ok] = np.nan
    return FrameErrors(
        stamp_s=prior.stamp_ns.astype(np.float64) * 1e-9,
        ok=ok,
        error_en_m=err,
        error_m=np.hypot(err[:, 0], err[:, 1]),
        yaw_error_rad=np.full(len(ok), np.nan),
        nees=nees_pos.copy(),
        nees_position=nees_pos,
    )


def summarize(fe: FrameErrors, frames: int, nees_dof: int) -> Metrics:
    """Summary metrics from per-frame errors (``frames`` = frames that have truth)."""
    e = fe.error_m[fe.ok]
    yaw = np.degrees(np.abs(fe.yaw_error_rad[fe.ok]))
    yaw = yaw[np.isfinite(yaw)]
    nees = fe.nees[fe.ok]
    nees = nees[np.isfinite(nees)]
    nees_pos = fe.nees_position[fe.ok]
    nees_pos = nees_pos[np.isfinite(nees_pos)]
    bound = CHI2_3DOF_95 if nees_dof == 3 else CHI2_2DOF_95
    denom = max(frames, 1)
    return Metrics(
        frames=frames,
        ok=int(fe.ok.sum()),
        availability=float(fe.ok.sum()) / denom,
        error_mean_m=_nanstat(np.mean, e),
        error_median_m=_nanstat(np.median, e),
        error_p95_m=_nanstat(lambda x: np.percentile(x, 95), e),
        error_max_m=_nanstat(np.max, e),
        recall_1m=float(np.sum(e <= 1.0)) / denom,
        recall_3m=float(np.sum(e <= 3.0)) / denom,
        recall_5m=float(np.sum(e <= 5.0)) / denom,
        yaw_error_mean_deg=_nanstat(np.mean, yaw),
        yaw_error_median_deg=_nanstat(np.median, yaw),
        yaw_error_p95_deg=_nanstat(lambda x: np.percentile(x, 95), yaw),
        nees_mean=_nanstat(np.mean, nees),
        nees_dof=nees_dof,
        nees_within_95=_nanstat(lambda x: np.mean(x <= bound), nees),
        nees_position_mean=_nanstat(np.mean, nees_pos),
        false_confidence_rate=_nanstat(lambda x: np.mean(x > 9.0), nees_pos),
        with_covariance=int(nees_pos.size),
        nees_inside_95=int(np.sum(nees <= bound)),
        false_confident=int(np.sum(nees_pos > 9.0)),
    )


@dataclass(frozen=True)
class EvalResult:
    """Everything ``eval`` computed."""

    estimate: Metrics
    prior: Metrics | None
    status_counts: dict[str, int]
    estimate_frames: FrameErrors
    prior_frames: FrameErrors | None
    origin: LocalEnu

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (metrics only)."""
        return {
            "estimate": asdict(self.estimate),
            "gnss_prior": asdict(self.prior) if self.prior else None,
            "status_counts": self.status_counts,
            "origin": {
                "lat_deg": self.origin.origin_lat_deg,
                "lon_deg": self.origin.origin_lon_deg,
            },
        }


def evaluate(poses: PoseTable, truth: TruthTable, prior: PriorTable | None = None) -> EvalResult:
    """Evaluate poses (and the prior baseline) against the truth.

    Raises:
        EvalError: no pose frame overlaps the truth's time span.
    """
    enu = LocalEnu(float(truth.lat_deg[0]), float(truth.lon_deg[0]))
    _, _, has = truth_at(truth, poses.stamp_ns, enu)
    if not np.any(has):
        raise EvalError("no frame of poses.csv lies within the truth's time span")
    fe = frame_errors(poses, truth, enu)
    counts: dict[str, int] = {}
    for s, h in zip(poses.status, has, strict=True):
        if h:
            counts[s] = counts.get(s, 0) + 1
    est = summarize(fe, int(has.sum()), 3)
    pm: Metrics | None = None
    pf: FrameErrors | None = None
    if prior is not None:
        _, _, phas = truth_at(truth, prior.stamp_ns, enu)
        pf = prior_errors(prior, truth, enu)
        pm = summarize(pf, int(phas.sum()), 2)
    return EvalResult(est, pm, counts, fe, pf, enu)


# --------------------------------------------------------------------------- output


def format_metric(v: float, digits: int = 2) -> str:
    """A metric for a table: ``digits`` decimals, ``-`` when it is not finite (no output)."""
    return "-" if not math.isfinite(v) else f"{v:.{digits}f}"


def metrics_table(result: EvalResult) -> str:
    """A Markdown table: the localizer next to the GNSS prior."""
    rows: list[tuple[str, str, str]] = []
    e, p = result.estimate, result.prior

    def add(label: str, fe: float, fp: float | None, digits: int = 2, pct: bool = False) -> None:
        def conv(x: float) -> float:
            return 100.0 * x if pct else x

        rows.append(
            (
                label,
                format_metric(conv(fe), digits),
                "-" if fp is None else format_metric(conv(fp), digits),
            )
        )

    rows.append(
        ("localised (ok / frames)", f"{e.ok} / {e.frames}", f"{p.ok} / {p.frames}" if p else "-")
    )
    add("availability %", e.availability, p.availability if p else None, 1, True)
    add("median error m", e.error_median_m, p.error_median_m if p else None)
    add("mean error m", e.error_mean_m, p.error_mean_m if p else None)
    add("p95 error m", e.error_p95_m, p.error_p95_m if p else None)
    add("max error m", e.error_max_m, p.error_max_m if p else None)
    add("recall@1m %", e.recall_1m, p.recall_1m if p else None, 1, True)
    add("recall@3m %", e.recall_3m, p.recall_3m if p else None, 1, True)
    add("recall@5m %", e.recall_5m, p.recall_5m if p else None, 1, True)
    add("median yaw error deg", e.yaw_error_median_deg, None)
    add("p95 yaw error deg", e.yaw_error_p95_deg, None)
    add(f"NEES mean ({e.nees_dof} dof / prior 2 dof)", e.nees_mean, p.nees_mean if p else None)
    add(
        "NEES inside chi2 95 % bound %", e.nees_within_95, p.nees_within_95 if p else None, 1, True
    )
    add(
        "false-confidence rate %",
        e.false_confidence_rate,
        p.false_confidence_rate if p else None,
        1,
        True,
    )

    def counts(m: Metrics) -> str:
        return f"{m.false_confident} / {m.with_covariance}" if m.with_covariance else "-"

    rows.append(("false-confident (n / with covariance)", counts(e), counts(p) if p else "-"))
    lines = ["| metric | cvgl_ros | GNSS prior |", "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def default_prior_path(poses_csv: str | Path) -> Path | None:
    """``prior.csv`` next to ``poses.csv`` when it exists."""
    p = Path(poses_csv).with_name("prior.csv")
    return p if p.is_file() else None


def run_eval(
    poses_csv: str | Path,
    truth_csv: str | Path,
    prior_csv: str | Path | None = None,
    report_dir: str | Path | None = None,
    map_path: str | None = None,
) -> EvalResult:
    """Evaluate files; optionally write the report directory (plots + ``report.md``).

    Args:
        poses_csv: ``poses.csv`` from the replay.
        truth_csv: truth CSV.
        prior_csv: ``prior.csv``; default: next to ``poses_csv`` when present.
        report_dir: where to write ``metrics.json``, PNG plots and ``report.md``.
        map_path: GeoTIFF drawn under the trajectory plot (optional).

    Returns:
        The evaluation.
    """
    poses = load_poses(poses_csv)
    truth = load_truth(truth_csv)
    prior_path = prior_csv if prior_csv is not None else default_prior_path(poses_csv)
    prior = load_prior(prior_path) if prior_path is not None else None
    result = evaluate(poses, truth, prior)
    if report_dir is not None:
        from cvgl_ros.tools.viz import write_report

        write_report(result, poses, truth, Path(report_dir), map_path=map_path)
    return result


def _main(args: argparse.Namespace) -> int:
    result = run_eval(args.poses, args.truth, args.prior, args.report, args.map)
    print(metrics_table(result))
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(result.status_counts.items()))
    print(f"\nstatus counts: {counts}")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2))
    if args.report:
        print(f"report: {Path(args.report) / 'report.md'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``eval`` subcommand."""
    p = sub.add_parser("eval", help="evaluate poses.csv against a truth CSV (+ GNSS baseline)")
    p.add_argument("poses", help="poses.csv from cvgl-ros replay")
    p.add_argument(
        "--truth", required=True, help="truth CSV: stamp_ns,lat_deg,lon_deg,yaw_enu_rad"
    )
    p.add_argument("--prior", default=None, help="prior.csv (default: next to poses.csv)")
    p.add_argument("--report", default=None, help="write plots + report.md to this directory")
    p.add_argument("--map", default=None, help="GeoTIFF drawn under the trajectory plot")
    p.add_argument("--json", default=None, help="also write the metrics as JSON here")
    p.set_defaults(func=_main)
