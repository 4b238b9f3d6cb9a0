"""Replay end to end: pipeline mode == node mode, mcap / sqlite3 / ROS 1 bags, outputs."""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cvgl_ros.sim.gnss import GnssNoiseConfig
from cvgl_ros.sim.synthetic_map import SyntheticMapConfig, synthetic_world, write_geotiff
from cvgl_ros.tools.bags import BagTopics
from cvgl_ros.tools.demo import plan_flight
from cvgl_ros.tools.errors import ReplayError
from cvgl_ros.tools.eval import POSE_COLUMNS, PRIOR_COLUMNS, run_eval
from cvgl_ros.tools.replay import replay
from cvgl_ros.tools.synth import SynthResult, synthesize

pytest.importorskip("rosbags")

MAP = SyntheticMapConfig(size_px=768, seed=11)


def _flight(tmp: Path, name: str, frames: int = 5, **changes: Any) -> tuple[SynthResult, Path]:
    world = synthetic_world(MAP)
    tif = tmp / "map.tif"
    if not tif.exists():
        write_geotiff(tif, world)
    cfg = plan_flight(world, frames=frames, width_px=320, height_px=240, seed=3)
    cfg = replace(cfg, **changes)
    res = synthesize(world, cfg, tmp / name, map_label="synthetic", map_source=str(tif))
    return res, tmp / name / "params.yaml"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def flight(tmp_path_factory: pytest.TempPathFactory) -> tuple[SynthResult, Path]:
    return _flight(tmp_path_factory.mktemp("replay"), "mcap")


def test_pipeline_mode_outputs(flight: tuple[SynthResult, Path], tmp_path: Path) -> None:
    res, params = flight
    out = replay(res.bag_path, params, tmp_path / "out", out_bag=True)
    with (tmp_path / "out" / "poses.csv").open() as fh:
        assert fh.readline().strip() == ",".join(POSE_COLUMNS)
    with (tmp_path / "out" / "prior.csv").open() as fh:
        assert fh.readline().strip() == ",".join(PRIOR_COLUMNS)
    rows = _rows(tmp_path / "out" / "poses.csv")
    assert len(rows) == res.num_frames
    for r in rows:
        if r["status"] == "ok":
            assert math.isfinite(float(r["lat_deg"])) and float(r["var_east_m2"]) > 0
        else:
            assert r["lat_deg"] == "" and r["east_m"] == ""
    s = out.summary
    assert s["frames"] == res.num_frames and s["mode"] == "pipeline"
    assert sum(s["status_counts"].values()) == res.num_frames
    assert "total" in s["latency_ms"] and s["latency_ms"]["total"]["p50_ms"] > 0
    assert s["messages"]["image"] == res.num_frames and s["messages"]["fix"] > res.num_frames
    # The published-messages bag holds one pose per ok frame and diagnostics per frame.
    from rosbags.highlevel import AnyReader

    with AnyReader([tmp_path / "out" / "out_bag"]) as reader:
        counts: dict[str, int] = {}
        for conn, _, _ in reader.messages():
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
    ok = s["status_counts"].get("ok", 0)
    assert counts.get("/cvgl_node/pose", 0) == ok and counts["/diagnostics"] == res.num_frames
    ev = run_eval(tmp_path / "out" / "poses.csv", res.truth_csv)
    assert ev.prior is not None and ev.estimate.error_median_m < 0.3 * ev.prior.error_median_m


def test_node_mode_gives_the_same_poses(flight: tuple[SynthResult, Path], tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    res, params = flight
    replay(res.bag_path, params, tmp_path / "direct", out_bag=True)
    node = replay(res.bag_path, params, tmp_path / "node", through_node=True, out_bag=True)
    assert node.summary["mode"] == "node"
    a, b = _rows(tmp_path / "direct" / "poses.csv"), _rows(tmp_path / "node" / "poses.csv")
    assert [r["stamp_ns"] for r in a] == [r["stamp_ns"] for r in b]
    assert [r["status"] for r in a] == [r["status"] for r in b]
    assert any(r["status"] == "ok" for r in a)
    for ra, rb in zip(a, b, strict=True):
        if ra["status"] != "ok":
            continue
        for col in ("lat_deg", "lon_deg"):
            assert float(ra[col]) == pytest.approx(float(rb[col]), abs=1e-9)
        for col in ("east_m", "north_m", "yaw_enu_rad"):
            assert float(ra[col]) == pytest.approx(float(rb[col]), abs=1e-4)
        for col in ("var_east_m2", "var_north_m2", "var_yaw_rad2"):
            assert float(ra[col]) == pytest.approx(float(rb[col]), rel=1e-4)
    assert _rows(tmp_path / "direct" / "prior.csv") == _rows(tmp_path / "node" / "prior.csv")
    # The fixes the replay writes are the node's: base_link, finite altitude, same fields.
    direct_fixes = _fixes(tmp_path / "direct" / "out_bag")
    node_fixes = _fixes(tmp_path / "node" / "out_bag")
    assert direct_fixes and sorted(direct_fixes) == sorted(node_fixes)
    for stamp, fa in direct_fixes.items():
        fb = node_fixes[stamp]
        assert fa["frame_id"] == fb["frame_id"] == "base_link"
        assert math.isfinite(fa["altitude"]) and fa["altitude"] == pytest.approx(fb["altitude"])
        for key in ("status", "service", "position_covariance_type"):
            assert fa[key] == fb[key], key
        np.testing.assert_allclose(fa["cov"], fb["cov"], rtol=1e-4)


def _fixes(bag: Path) -> dict[int, dict[str, Any]]:
    """The ``~/fix`` messages of an out bag by stamp, as plain fields."""
    from rosbags.highlevel import AnyReader

    out: dict[int, dict[str, Any]] = {}
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == "/cvgl_node/fix"]
        for conn, _, raw in reader.messages(connections=conns):
            m = reader.deserialize(raw, conn.msgtype)
            stamp = m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
            out[stamp] = {
                "frame_id": m.header.frame_id,
                "altitude": float(m.altitude),
                "status": int(m.status.status),
                "service": int(m.status.service),
                "position_covariance_type": int(m.position_covariance_type),
                "cov": np.asarray(m.position_covariance, dtype=float),
            }
    return out


def test_sqlite3_compressed_and_dropouts(tmp_path: Path) -> None:
    gnss = GnssNoiseConfig(rate_hz=2.0, dropout_rate_per_s=0.6, dropout_mean_s=3.0, seed=10)
    res, params = _flight(tmp_path, "sq", frames=6, storage="sqlite3", compressed=True, gnss=gnss)
    assert any(p.suffix == ".db3" for p in res.bag_path.iterdir())
    out = replay(res.bag_path, params, tmp_path / "out")
    assert out.summary["topics"]["image"] == "/camera/image_raw/compressed"
    statuses = [r.estimate.status.value for r in out.records]
    priors = [r.prior_status for r in out.records]
    assert len(statuses) == 6
    assert "ok" in priors and any(p != "ok" for p in priors)  # the outage covers late frames
    # Frames without a usable fix say so; they never carry a pose.
    for st, pr in zip(statuses, priors, strict=True):
        if pr != "ok":
            assert st in ("no_fix", "stale_fix")
    assert "ok" in statuses


# ------------------------------------------------------------------ ROS 1


def _to_ros1(obj: Any, typename: str, ts1: Any) -> Any:
    cls = ts1.types[typename]
    kw: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = f.name if hasattr(obj, f.name) else f.name.lower()
        if not hasattr(obj, name):
            kw[f.name] = 0  # Header.seq
            continue
        v = getattr(obj, name)
        if dataclasses.is_dataclass(v):
            kw[f.name] = _to_ros1(v, v.__msgtype__, ts1)  # type: ignore[union-attr]
        elif isinstance(v, list):
            kw[f.name] = [
                _to_ros1(x, x.__msgtype__, ts1) if dataclasses.is_dataclass(x) else x for x in v
            ]
        else:
            kw[f.name] = v
    return cls(**kw)


def _write_ros1_copy(src: Path, dst: Path) -> None:
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts1 = get_typestore(Stores.ROS1_NOETIC)
    with AnyReader([src]) as reader, Writer(dst) as writer:
        conns: dict[str, Any] = {}
        for c, t, raw in reader.messages():
            msg = _to_ros1(reader.deserialize(raw, c.msgtype), c.msgtype, ts1)
            if c.topic not in conns:
                conns[c.topic] = writer.add_connection(c.topic, c.msgtype, typestore=ts1)
            writer.write(conns[c.topic], t, ts1.serialize_ros1(msg, c.msgtype))


def test_ros1_bag_replays_like_ros2(flight: tuple[SynthResult, Path], tmp_path: Path) -> None:
    res, params = flight
    ros1 = tmp_path / "flight.bag"
    _write_ros1_copy(res.bag_path, ros1)
    a = replay(res.bag_path, params, tmp_path / "ros2")
    b = replay(ros1, params, tmp_path / "ros1")
    for ra, rb in zip(a.records, b.records, strict=True):
        assert ra.stamp_ns == rb.stamp_ns and ra.estimate.status == rb.estimate.status
        if ra.estimate.ok:
            assert ra.estimate.lat_deg == pytest.approx(rb.estimate.lat_deg, abs=1e-9)
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return
    # ROS 1 messages are converted field by field for the node (D/K/R/P, secs/nsecs).
    c = replay(ros1, params, tmp_path / "ros1_node", through_node=True, max_frames=2)
    for ra, rc in zip(a.records[:2], c.records, strict=True):
        assert ra.estimate.status == rc.estimate.status
        if ra.estimate.ok:
            assert ra.estimate.lat_deg == pytest.approx(rc.estimate.lat_deg, abs=1e-9)


def test_real_ros1_gnss_bag_without_camera_is_refused_clearly(
    shared_data: Path, tmp_path: Path
) -> None:
    bag = shared_data / "ros1_robot_localization_test1_gnss" / "test1.bag"
    if not bag.is_file():
        pytest.skip("robot_localization test1.bag not present")
    small = SyntheticMapConfig(size_px=128, num_fields=4, num_buildings=4, num_trees=10)
    tif = write_geotiff(tmp_path / "map.tif", synthetic_world(small))
    with pytest.raises(ReplayError, match="no image topic"):
        replay(bag, None, tmp_path, map_source=str(tif), topics=BagTopics(fix="/fix"))


def test_missing_bag_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="not found"):
        replay(tmp_path / "nope", None, tmp_path / "o", map_source=str(tmp_path / "x.tif"))


def test_prior_rows_match_fix_buffer_semantics(
    flight: tuple[SynthResult, Path], tmp_path: Path
) -> None:
    res, params = flight
    out = replay(res.bag_path, params, tmp_path / "o", max_frames=2)
    assert len(out.records) == 2
    ages = [float(r["age_s"]) for r in _rows(tmp_path / "o" / "prior.csv")]
    assert all(abs(a) <= 0.5 for a in ages)
    assert np.isfinite(out.summary["frames_per_s_processing"])
