"""The demo (main job) end to end on the procedural synthetic map, through the real node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvgl_ros.tools.demo import run_demo


def test_demo_runs_through_the_node(tmp_path: Path) -> None:
    pytest.importorskip("rosbags")
    pytest.importorskip("rclpy")
    res = run_demo(tmp_path / "demo", frames=4, through_node=True)
    out = res.out_dir
    assert res.mode == "node"
    for rel in (
        "synthetic_map.tif", "flight", "truth.csv", "params.yaml", "replay/poses.csv",
        "replay/prior.csv", "replay/summary.json", "report/report.md", "report/trajectory.png",
        "demo_summary.json",
    ):  # fmt: skip
        assert (out / rel).exists(), rel
    assert list((out / "overlay").glob("overlay_*.png"))
    summary = json.loads((out / "demo_summary.json").read_text())
    assert "SYNTHETIC" in summary["map"]
    assert res.availability > 0.5
    assert res.median_error_m < 0.2 * res.prior_median_error_m
