"""`cvgl-ros run` starts the real node process, reports bad parameters, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvgl_ros.tools.run import ros_arguments

pytestmark = pytest.mark.ros


def test_ros_arguments() -> None:
    args = ros_arguments("config/x.yaml", ["a:=1"], ["--ros-args", "-r", "__ns:=/d"])
    assert args[:3] == ["cvgl_node", "--ros-args", "--params-file"]
    assert Path(args[3]).is_absolute() and args[3].endswith("config/x.yaml")
    assert args[4:] == ["-p", "a:=1", "-r", "__ns:=/d"]
    assert ros_arguments(None, [], []) == ["cvgl_node", "--ros-args"]
    with pytest.raises(ValueError):
        ros_arguments(None, ["a=1"], [])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cvgl_ros.tools.cli", "run", *args]


def test_run_reports_a_typo_and_exits_1(repo_root: Path) -> None:
    proc = subprocess.run(
        _cli("--params-file", "config/drone_nadir.yaml", "-p", "gating.min_inlier:=3"),
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "gating.min_inlier" in out and "did you mean 'gating.min_inliers'" in out


@pytest.mark.data
def test_run_starts_and_stops_on_sigint(repo_root: Path, shared_data: Path) -> None:
    ortho = shared_data / "spacenet_solaris_samples" / "sample_geotiff.tif"
    proc = subprocess.Popen(
        _cli(
            "--params-file",
            "config/drone_nadir.yaml",
            "-p",
            f"tiles.source:={ortho}",
            "--ros-args",
            "-r",
            "__ns:=/cli_test",
        ),
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1"),
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120.0
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "ready:" in line:
                break
        assert any("ready:" in line for line in lines), "".join(lines)
        ready = next(line for line in lines if "ready:" in line)
        assert "/cli_test/camera/image_raw" in ready and "depth constant_range" in ready
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        rest = proc.stdout.read()
        assert "Traceback" not in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
