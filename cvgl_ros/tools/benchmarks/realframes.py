"""Benchmark suite ``realframes``: real drone frames vs real orthophotos, beside the OpenCV peer.

Runs :func:`cvgl_ros.tools.realdata.evaluate_real_frames` on ``../shared/data/odm_minnesota_dev``
(5 GNSS-error seeds, quick: 2; without and with a 5-degree heading sensor; both orthophotos):
the node's pipeline with ``config/drone_nadir.yaml`` and the OpenCV peer
(:mod:`cvgl_ros.tools.benchmarks.opencv_peer`) on the same bags, scored by the same eval. Rows
report counts: localised frames, false-confident poses, NEES inside the chi-square(3) 95 % bound.
The ratio of each availability row is ours over the peer's in the same run. Without the data the
suite returns one row saying so.
"""

from __future__ import annotations

import tempfile
from typing import Any

from cvgl_ros.tools.realdata import evaluate_real_frames, odm_minnesota_dev, report_table


def run(quick: bool) -> list[dict[str, Any]]:
    """Benchmark rows (see module docstring)."""
    dataset = odm_minnesota_dev()
    if dataset is None:
        return [
            {
                "name": "realframes",
                "metric": "skipped",
                "value": float("nan"),
                "notes": "../shared/data/odm_minnesota_dev not found (set CVGL_SHARED_DATA)",
            }
        ]
    seeds = (1, 2) if quick else (1, 2, 3, 4, 5)
    with tempfile.TemporaryDirectory() as tmp:
        report = evaluate_real_frames(dataset, tmp, seeds=seeds)
    print(report_table(report), flush=True)
    rows: list[dict[str, Any]] = []
    for c in report.conditions:
        heading = (
            "no_heading" if c.heading_sigma_deg is None else f"heading_{c.heading_sigma_deg:g}deg"
        )
        stem = c.orthophoto.removesuffix(".tif")
        po, pp, n_paired = c.paired_median_m
        peer_name = f"{stem}_{heading}_opencv_peer"
        for label, score in (("opencv_peer", c.peer), ("cvgl_ros", c.ours)):
            m = score.metrics
            row: dict[str, Any] = {
                "name": f"{stem}_{heading}_{label}",
                "metric": "availability",
                "value": m.availability,
                "notes": (
                    f"{m.ok}/{m.frames} localised; median {m.error_median_m:.2f} m, p95 "
                    f"{m.error_p95_m:.2f} m; paired median {po if label == 'cvgl_ros' else pp:.2f}"
                    f" m over {n_paired} frames both localised"
                    + (
                        f"; false-confident {m.false_confident}/{m.with_covariance}; NEES in "
                        f"chi2(3) 95 %: {m.nees_inside_95}/{m.with_covariance}"
                        if m.with_covariance
                        else "; no covariance"
                    )
                ),
                "ok": m.ok,
                "frames": m.frames,
                "median_error_m": m.error_median_m,
                "false_confident": m.false_confident,
                "nees_inside_95": m.nees_inside_95,
                "with_covariance": m.with_covariance,
            }
            if label == "cvgl_ros" and c.peer.metrics.availability > 0:
                row["baseline"] = peer_name
                row["ratio"] = m.availability / c.peer.metrics.availability
                row["goal"] = ">= peer availability, <= peer median, 0 false-confident"
            rows.append(row)
    return rows
