"""`cvgl-ros replay`, `prefetch` and `run` on bad inputs: one clear line, no traceback, exit != 0.

Each case runs the real command in a subprocess (as a user would) on a tiny synthetic flight
and checks the exit code, that no Python traceback reaches the terminal, and that the line
says what is wrong.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cvgl_ros.sim.synthetic_map import SyntheticMapConfig, synthetic_world, write_geotiff
from cvgl_ros.tools.demo import plan_flight
from cvgl_ros.tools.synth import synthesize

pytest.importorskip("rosbags")

UNREACHABLE_XYZ = "http://127.0.0.1:9/{z}/{x}/{y}.png"  # never contacted: offline or failing


@dataclass(frozen=True)
class Inputs:
    bag: Path
    params: Path
    tif: Path
    bad: Path  # folder of broken files


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    out = tmp_path_factory.mktemp("cli_errors")
    world = synthetic_world(SyntheticMapConfig(size_px=256, m_per_px=1.0, seed=5))
    tif = write_geotiff(out / "map.tif", world)
    cfg = plan_flight(world, frames=2, width_px=64, height_px=48, seed=1)
    res = synthesize(world, cfg, out / "flight", map_label="synthetic", map_source=str(tif))
    bad = out / "bad"
    bad.mkdir()
    (bad / "garbage.mcap").write_bytes(b"not an mcap file at all\n" * 10)
    (bad / "garbage.tif").write_bytes(b"II*\x00 truncated tiff")
    (bad / "unparseable.yaml").write_text("cvgl_node:\n  ros__parameters: [a, b\n")
    (bad / "not_params.yaml").write_text("- just\n- a list\n")
    (bad / "garbage.mbtiles").write_bytes(b"\x00" * 4096)
    _foreign_sqlite(bad / "foreign.mbtiles")
    return Inputs(res.bag_path, out / "flight" / "params.yaml", tif, bad)


def _foreign_sqlite(path: Path) -> None:
    """Another program's MBTiles: the MBTiles tables, no cvgl_ros schema."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data)")
    conn.execute("CREATE TABLE metadata (name, value)")
    conn.commit()
    conn.close()


def _cvgl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cvgl_ros.tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def _assert_one_clear_line(proc: subprocess.CompletedProcess[str], *phrases: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    lines = [line for line in proc.stderr.splitlines() if all(p in line for p in phrases)]
    assert len(lines) == 1, f"expected one line with {phrases}:\n{proc.stderr}"
    return lines[0]


def _replay_cases(i: Inputs) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    p, b = str(i.params), str(i.bag)
    cache = ["--map", UNREACHABLE_XYZ, "--set"]
    return {
        "missing_bag": ([str(i.bad / "nope"), "--config", p], ("bag not found",)),
        "corrupt_bag": ([str(i.bad / "garbage.mcap"), "--config", p], ("cannot open bag",)),
        "missing_image_topic": ([b, "--config", p, "--image-topic", "/cam"], ("no image topic",)),
        "missing_fix_topic": ([b, "--config", p, "--fix-topic", "/gps"], ("no fix topic",)),
        "missing_map": ([b, "--config", p, "--map", str(i.bad / "x.tif")], ("not found",)),
        "corrupt_map": (
            [b, "--config", p, "--map", str(i.bad / "garbage.tif")],
            ("cannot open the map", "garbage.tif"),
        ),
        "unparseable_yaml": (
            [b, "--config", str(i.bad / "unparseable.yaml")],
            ("not valid YAML at line",),
        ),
        "not_a_params_file": (
            [b, "--config", str(i.bad / "not_params.yaml")],
            ("not a ROS parameter file",),
        ),
        "corrupt_cache": (
            [b, "--config", p, *cache, f"tile_cache_path:={i.bad / 'garbage.mbtiles'}"],
            ("not a database",),
        ),
        "foreign_cache": (
            [b, "--config", p, *cache, f"tile_cache_path:={i.bad / 'foreign.mbtiles'}"],
            ("not a cvgl_ros tile cache",),
        ),
    }


REPLAY_CASES = list(_replay_cases(Inputs(Path(), Path(), Path(), Path())))


@pytest.mark.parametrize("case", REPLAY_CASES)
def test_replay_errors(inputs: Inputs, tmp_path: Path, case: str) -> None:
    args, phrases = _replay_cases(inputs)[case]
    proc = _cvgl("replay", *args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    line = _assert_one_clear_line(proc, "cvgl-ros replay: error:", *phrases)
    assert "-v for the traceback" not in line, "a known failure must not read as a bug"


def test_replay_leaves_a_foreign_cache_untouched(inputs: Inputs, tmp_path: Path) -> None:
    foreign = tmp_path / "qgis_export.mbtiles"
    _foreign_sqlite(foreign)
    before = foreign.read_bytes()
    args, _ = _replay_cases(inputs)["foreign_cache"]
    args[-1] = f"tile_cache_path:={foreign}"
    proc = _cvgl("replay", *args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode != 0
    assert foreign.read_bytes() == before  # not even switched to WAL


@pytest.mark.parametrize(
    ("cache", "phrase"),
    [("garbage.mbtiles", "not a database"), ("foreign.mbtiles", "not a cvgl_ros tile cache")],
)
def test_prefetch_errors(inputs: Inputs, tmp_path: Path, cache: str, phrase: str) -> None:
    proc = _cvgl(
        "prefetch",
        *("--source", UNREACHABLE_XYZ, "--cache", str(inputs.bad / cache), "--no-progress"),
        *("--lat", "47.0", "--lon", "8.0", "--radius-m", "10", "--zoom", "18"),
        cwd=tmp_path,
    )
    _assert_one_clear_line(proc, "prefetch: error:", phrase)


@pytest.mark.ros
@pytest.mark.parametrize(
    ("extra", "phrases"),
    [
        (["--params-file", "BAD/unparseable.yaml"], ("cvgl-ros run:", "not valid YAML")),
        (["-p", "tiles.source:=BAD/x.tif"], ("FATAL", "orthophoto not found")),
        (
            [
                "-p",
                f"tiles.source:={UNREACHABLE_XYZ}",
                "-p",
                "tile_cache_path:=BAD/garbage.mbtiles",
            ],
            ("FATAL", "not a database"),
        ),
        (["--ros-args", "-r", "not a remap"], ("FATAL", "cannot start")),
    ],
    ids=["unparseable_yaml", "missing_map", "corrupt_cache", "bad_ros_args"],
)
def test_run_errors(
    inputs: Inputs, tmp_path: Path, extra: list[str], phrases: tuple[str, ...]
) -> None:
    args = [a.replace("BAD/", f"{inputs.bad}/") for a in extra]
    if "--params-file" not in args:
        args = ["--params-file", str(inputs.params), *args]
        if "--ros-args" in args:  # a valid map, so that only the arguments are wrong
            args[2:2] = ["-p", f"tiles.source:={inputs.tif}"]
    proc = _cvgl("run", *args, cwd=tmp_path)
    _assert_one_clear_line(proc, *phrases)
