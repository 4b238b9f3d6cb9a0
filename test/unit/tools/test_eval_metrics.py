"""Evaluation metrics on constructed poses with known errors and covariances."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.tools.eval import (
    POSE_COLUMNS,
    PRIOR_COLUMNS,
    EvalError,
    metrics_table,
    run_eval,
)

ORIGIN = LocalEnu(47.0, 8.0)
T0_NS = 1_700_000_000_000_000_000


def _write(path: Path, header: tuple[str, ...], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _truth(tmp_path: Path, n: int) -> tuple[Path, np.ndarray, np.ndarray]:
    east = np.linspace(0.0, 50.0, n)
    north = np.linspace(0.0, -20.0, n)
    yaw = np.linspace(-0.5, 0.5, n)
    lat, lon = ORIGIN.to_wgs84(east, north)
    rows = [[T0_NS + i * 10**9, f"{lat[i]:.12f}", f"{lon[i]:.12f}", yaw[i]] for i in range(n)]
    return (
        _write(tmp_path / "truth.csv", ("stamp_ns", "lat_deg", "lon_deg", "yaw_enu_rad"), rows),
        np.stack([east, north], 1),
        yaw,
    )


def _pose_rows(
    truth_en: np.ndarray,
    yaw: np.ndarray,
    err_en: np.ndarray,
    err_yaw: np.ndarray,
    var_m2: float,
    var_yaw: float,
    ok: np.ndarray,
) -> list[list[object]]:
    rows: list[list[object]] = []
    for i in range(len(truth_en)):
        if not ok[i]:
            rows.append([T0_NS + i * 10**9, "too_few_inliers"] + [""] * 9 + ["3", "0.1", "12.0"])
            continue
        e, n = truth_en[i] + err_en[i]
        lat, lon = ORIGIN.to_wgs84(e, n)
        rows.append(
            [
                T0_NS + i * 10**9,
                "ok",
                f"{lat:.12f}",
                f"{lon:.12f}",
                e,
                n,
                yaw[i] + err_yaw[i],
                var_m2,
                0.0,
                var_m2,
                var_yaw,
                100,
                0.8,
                20.0,
            ]
        )
    return rows


def test_known_errors_give_exact_statistics(tmp_path: Path) -> None:
    n = 10
    truth, t_en, yaw = _truth(tmp_path, n)
    errs = np.arange(n, dtype=np.float64) * 0.5  # 0, 0.5, ..., 4.5 m east
    err_en = np.stack([errs, np.zeros(n)], axis=1)
    ok = np.ones(n, dtype=bool)
    ok[9] = False  # the 4.5 m frame has no pose
    rows = _pose_rows(t_en, yaw, err_en, np.full(n, math.radians(2.0)), 1.0, 1.0, ok)
    poses = _write(tmp_path / "poses.csv", POSE_COLUMNS, rows)
    r = run_eval(poses, truth)
    e = r.estimate
    assert e.frames == 10 and e.ok == 9
    assert e.availability == pytest.approx(0.9)
    assert e.error_median_m == pytest.approx(2.0, abs=1e-6)
    assert e.error_max_m == pytest.approx(4.0, abs=1e-6)
    assert e.error_mean_m == pytest.approx(2.0, abs=1e-6)
    # Recall over ALL frames: <= 1 m: 0, 0.5, 1.0 -> 3 of 10.
    assert e.recall_1m == pytest.approx(0.3)
    assert e.recall_3m == pytest.approx(0.7)
    assert e.recall_5m == pytest.approx(0.9)
    assert e.yaw_error_median_deg == pytest.approx(2.0, abs=1e-6)
    # sigma 1 m: errors above 3 m (3.5, 4.0) are outside the 3-sigma ellipse -> 2 of 9.
    assert e.false_confidence_rate == pytest.approx(2 / 9)
    assert (e.false_confident, e.with_covariance) == (2, 9)
    assert r.status_counts == {"ok": 9, "too_few_inliers": 1}
    assert r.prior is None
    table = metrics_table(r)
    assert "| localised (ok / frames) | 9 / 10 | - |" in table
    assert "| false-confident (n / with covariance) | 2 / 9 | - |" in table


def test_poses_without_covariance_count_as_localised_not_as_consistent(tmp_path: Path) -> None:
    """A baseline that gives no covariance: scored for availability and error only."""
    n = 4
    truth, t_en, yaw = _truth(tmp_path, n)
    rows = _pose_rows(t_en, yaw, np.ones((n, 2)), np.zeros(n), 1.0, 1.0, np.ones(n, bool))
    for row in rows:
        row[7:11] = ["", "", "", ""]
    r = run_eval(_write(tmp_path / "poses.csv", POSE_COLUMNS, rows), truth)
    assert r.estimate.ok == 4 and r.estimate.with_covariance == 0
    assert r.estimate.error_median_m == pytest.approx(math.sqrt(2.0), abs=1e-6)
    assert math.isnan(r.estimate.false_confidence_rate)
    assert "| false-confident (n / with covariance) | - | - |" in metrics_table(r)


def test_consistent_covariance_gives_nees_near_dof(tmp_path: Path) -> None:
    n = 400
    truth, t_en, yaw = _truth(tmp_path, n)
    rng = np.random.default_rng(0)
    sigma_m, sigma_yaw = 2.0, 0.05
    err_en = rng.normal(0.0, sigma_m, (n, 2))
    err_yaw = rng.normal(0.0, sigma_yaw, n)
    rows = _pose_rows(t_en, yaw, err_en, err_yaw, sigma_m**2, sigma_yaw**2, np.ones(n, bool))
    r = run_eval(_write(tmp_path / "poses.csv", POSE_COLUMNS, rows), truth)
    assert r.estimate.nees_dof == 3
    assert r.estimate.nees_mean == pytest.approx(3.0, abs=0.35)
    assert r.estimate.nees_within_95 == pytest.approx(0.95, abs=0.03)
    assert r.estimate.false_confidence_rate < 0.03
    # The same errors with a 10x too small covariance are flagged as overconfident.
    rows = _pose_rows(
        t_en, yaw, err_en, err_yaw, 0.01 * sigma_m**2, 0.01 * sigma_yaw**2, np.ones(n, bool)
    )
    bad = run_eval(_write(tmp_path / "poses_bad.csv", POSE_COLUMNS, rows), truth)
    assert bad.estimate.nees_mean > 100.0
    assert bad.estimate.false_confidence_rate > 0.5


def test_prior_baseline_read_next_to_poses(tmp_path: Path) -> None:
    n = 6
    truth, t_en, yaw = _truth(tmp_path, n)
    rows = _pose_rows(t_en, yaw, np.zeros((n, 2)), np.zeros(n), 1.0, 1.0, np.ones(n, bool))
    poses = _write(tmp_path / "poses.csv", POSE_COLUMNS, rows)
    prior_rows: list[list[object]] = []
    for i in range(n):
        if i == 0:
            prior_rows.append([T0_NS, "stale_fix", "", "", "", "", "", ""])
            continue
        lat, lon = ORIGIN.to_wgs84(t_en[i, 0] + 6.0, t_en[i, 1] + 8.0)  # 10 m off
        prior_rows.append([T0_NS + i * 10**9, "ok", lat, lon, 100.0, 0.0, 100.0, 0.1])
    _write(tmp_path / "prior.csv", PRIOR_COLUMNS, prior_rows)
    r = run_eval(poses, truth)
    assert r.prior is not None
    assert r.prior.availability == pytest.approx(5 / 6)
    assert r.prior.error_median_m == pytest.approx(10.0, abs=1e-3)
    assert r.prior.nees_dof == 2
    assert r.prior.nees_mean == pytest.approx(1.0, abs=1e-3)  # 100 / 100
    table = metrics_table(r)
    assert "GNSS prior" in table and "10.00" in table


def test_missing_columns_and_no_overlap(tmp_path: Path) -> None:
    truth, t_en, yaw = _truth(tmp_path, 3)
    bad = _write(tmp_path / "bad.csv", ("stamp_ns", "status"), [[1, "ok"]])
    with pytest.raises(EvalError, match="missing columns"):
        run_eval(bad, truth)
    rows = _pose_rows(t_en, yaw, np.zeros((3, 2)), np.zeros(3), 1.0, 1.0, np.ones(3, bool))
    for r in rows:
        r[0] = int(r[0]) + 10**12  # 1000 s later than the truth
    late = _write(tmp_path / "late.csv", POSE_COLUMNS, rows)
    with pytest.raises(EvalError, match="time span"):
        run_eval(late, truth)
    with pytest.raises(EvalError, match="not found"):
        run_eval(tmp_path / "nope.csv", truth)


def test_report_directory(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    n = 8
    truth, t_en, yaw = _truth(tmp_path, n)
    rng = np.random.default_rng(1)
    rows = _pose_rows(
        t_en, yaw, rng.normal(0, 1, (n, 2)), np.zeros(n), 1.0, 0.01, np.arange(n) != 3
    )
    poses = _write(tmp_path / "poses.csv", POSE_COLUMNS, rows)
    report = tmp_path / "report"
    run_eval(poses, truth, report_dir=report)
    for name in (
        "trajectory.png",
        "error_over_time.png",
        "error_vs_inlier_ratio.png",
        "covariance_ellipses.png",
        "metrics.json",
    ):
        assert (report / name).stat().st_size > 1000 or name == "metrics.json"
    text = (report / "report.md").read_text()
    assert "| median error m |" in text and "trajectory.png" in text
