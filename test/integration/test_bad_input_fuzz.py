"""Fuzz: mutated bags never give a confident wrong pose.

A synthetic nadir flight (SYNTHETIC map, rendered camera, exact truth) is written as a bag; a
seeded generator then rewrites it several times over with one mutation per frame -- image
encodings, sizes and steps, CameraInfo K and declared size, image stamps (duplicates, out of
order, offset from the IMU), IMU gaps and late IMU -- into a new bag, which is replayed through
the :class:`~cvgl_ros.ros.pipeline.Pipeline` (``replay_pipeline``, as ``cvgl-ros replay``
does). Every OK pose is scored against the truth: its position error must lie inside its own
3-sigma ellipse (position NEES <= 9, the false-confidence definition of ``cvgl-ros eval``).
Mutations that make an input wrong must be refused (with their counter); harmless ones (a
bgr8 label, row padding, a duplicate, an IMU gap) may localize, honestly.

Not fuzzed: errors no message reveals. A self-consistent but wrong calibration (focal length
off by 10 %, measured here: 0.4-0.8 m error at 0.11-0.13 m sigma on this flight) or a wrong
IMU attitude look exactly like correct ones; they are the calibration's job, not the node's.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.ros.pipeline import Pipeline
from cvgl_ros.sim.synthetic_map import SyntheticMapConfig, synthetic_world, write_geotiff
from cvgl_ros.tools.demo import plan_flight
from cvgl_ros.tools.outputs import published_covariance
from cvgl_ros.tools.replay_pipeline import replay_pipeline
from cvgl_ros.tools.synth import open_writer, synthesize

pytest.importorskip("rosbags")

FRAMES = 60  # rendered once, replayed PASSES times with fresh mutations
PASSES = 4
PASS_SHIFT_NS = 200 * 1_000_000_000  # each pass is a later flight over the same ground
SEED = 14
MIN_MUTATED_FRAMES = 200

Mutation = Callable[[dict[str, Any], Any], None]


def _with(msg: Any, **fields: Any) -> Any:
    return dataclasses.replace(msg, **fields)


def _restamp(types: Any, msg: Any, stamp_ns: int) -> Any:
    stamp = types["builtin_interfaces/msg/Time"](
        sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
    )
    return _with(msg, header=_with(msg.header, stamp=stamp))


# --- mutations: each edits one frame's bundle in place --------------------------------------
# A bundle: {"image": msg, "info": msg, "imu": msg | None, "stamp_ns": int, "events": extra
# (offset_ns, role, msg) emitted after the image, "imu_after_image": bool, "delay_image": bool}


def _image(**fields: Any) -> Mutation:
    def mutate(b: dict[str, Any], types: Any) -> None:
        img = b["image"]
        values = {k: (v(img) if callable(v) else v) for k, v in fields.items()}
        b["image"] = _with(img, **values)

    return mutate


def _info(fn: Callable[[Any], dict[str, Any]]) -> Mutation:
    def mutate(b: dict[str, Any], types: Any) -> None:
        b["info"] = _with(b["info"], **fn(b["info"]))

    return mutate


def _k_scaled(info: Any, factor: float) -> dict[str, Any]:
    k = np.array(info.k, dtype=np.float64)
    k[[0, 2, 4, 5]] *= factor
    return {"k": k}


def _k_fx(info: Any, value: float) -> dict[str, Any]:
    k = np.array(info.k, dtype=np.float64)
    k[0] = value
    return {"k": k}


def _duplicate(b: dict[str, Any], types: Any) -> None:
    b["events"].append((4, "image", b["image"]))  # the same message delivered twice


def _out_of_order(b: dict[str, Any], types: Any) -> None:
    b["delay_image"] = True  # arrives after the next frame's image


def _stamp_offset(b: dict[str, Any], types: Any) -> None:
    # Image stamped 0.3 s after its exposure: the IMU no longer brackets it.
    b["image"] = _restamp(types, b["image"], b["stamp_ns"] + 300_000_000)


def _imu_dropped(b: dict[str, Any], types: Any) -> None:
    b["imu"] = None


def _imu_late(b: dict[str, Any], types: Any) -> None:
    b["imu_after_image"] = True


# name: (expectation, mutation, counter). Expectations: "refuse" (the frame gives no pose and
# the counter moves), "reject_info" (the CameraInfo is refused with the counter; the frame
# keeps the previous, good camera and may localize), "may_pass" (a pose, if any, is honest).
MUTATIONS: dict[str, tuple[str, Mutation, str]] = {
    "rgb8_as_16UC1": ("refuse", _image(encoding="16UC1"), "image:encoding_mismatch"),
    "rgb8_as_mono8": ("refuse", _image(encoding="mono8"), "image:encoding_mismatch"),
    "rgb8_as_yuv422": ("refuse", _image(encoding="yuv422"), "image:encoding_mismatch"),
    "rgb8_as_rgba8": ("refuse", _image(encoding="rgba8"), "image:bad_size"),
    "rgb8_as_mono16_step_fits": (
        "refuse",
        _image(encoding="mono16", step=lambda m: 2 * m.width),
        "image:data_size_mismatch",
    ),
    "width_halved": ("refuse", _image(width=lambda m: m.width // 2), "image:encoding_mismatch"),
    "height_halved": (
        "refuse",
        _image(height=lambda m: m.height // 2),
        "image:data_size_mismatch",
    ),
    "truncated": ("refuse", _image(data=lambda m: m.data[: m.data.size // 2]), "image:truncated"),
    "extra_bytes": (
        "refuse",
        _image(data=lambda m: np.concatenate([m.data, np.zeros(999, np.uint8)])),
        "image:data_size_mismatch",
    ),
    "float_encoding": ("refuse", _image(encoding="32FC1"), "image:unsupported_encoding"),
    "bgr8_label": ("may_pass", _image(encoding="bgr8"), ""),
    "padded_rows": (
        "may_pass",
        _image(
            step=lambda m: m.step + 16,
            data=lambda m: np.pad(m.data.reshape(m.height, m.step), ((0, 0), (0, 16))).reshape(-1),
        ),
        "",
    ),
    # CameraInfo: a rejected one leaves the previous, good camera in place (no new counter on
    # the frame); an accepted one for the wrong image size must not be applied to the image.
    "info_declared_x3": (
        "reject_info",
        _info(lambda i: {"width": 3 * i.width, "height": 3 * i.height}),
        "camera_info:principal_point",
    ),
    "info_full_res_for_half_image": (
        "refuse",
        _info(lambda i: {"width": 2 * i.width, "height": 2 * i.height, **_k_scaled(i, 2.0)}),
        "camera_info:size_mismatch",
    ),
    "info_K_for_half_size": (
        "reject_info",
        _info(lambda i: _k_scaled(i, 0.5)),
        "camera_info:principal_point",
    ),
    "info_K_for_double_size": (
        "reject_info",
        _info(lambda i: _k_scaled(i, 2.0)),
        "camera_info:principal_point",
    ),
    "info_fx_nan": ("reject_info", _info(lambda i: _k_fx(i, math.nan)), "camera_info:"),
    "info_fx_zero": ("reject_info", _info(lambda i: _k_fx(i, 0.0)), "camera_info:"),
    "info_fx_negative": ("reject_info", _info(lambda i: _k_fx(i, -300.0)), "camera_info:"),
    "duplicate_stamp": ("may_pass", _duplicate, ""),  # checked in total below
    "out_of_order": ("may_pass", _out_of_order, ""),
    "stamp_offset_from_imu": ("may_pass", _stamp_offset, ""),
    "imu_dropped": ("may_pass", _imu_dropped, ""),
    "imu_late": ("may_pass", _imu_late, ""),
}


# --- the bags --------------------------------------------------------------------------------


@dataclasses.dataclass
class Flight:
    bag: Path
    params: Path
    truth_lat_lon: dict[int, tuple[float, float]]  # stamp_ns -> truth


@pytest.fixture(scope="module")
def flight(tmp_path_factory: pytest.TempPathFactory) -> Flight:
    out = tmp_path_factory.mktemp("fuzz")
    world = synthetic_world(SyntheticMapConfig(size_px=512, m_per_px=1.0, seed=14))
    tif = write_geotiff(out / "map.tif", world)
    cfg = plan_flight(world, frames=FRAMES, width_px=320, height_px=240, seed=SEED)
    res = synthesize(world, cfg, out / "base", map_label="synthetic", map_source=str(tif))
    with res.truth_csv.open(newline="") as fh:
        truth = {
            int(r["stamp_ns"]): (float(r["lat_deg"]), float(r["lon_deg"]))
            for r in csv.DictReader(fh)
        }
    return Flight(res.bag_path, out / "base" / "params.yaml", truth)


def _read_base(
    bag: Path,
) -> tuple[list[tuple[int, Any]], list[dict[str, Any]], dict[str, tuple[str, str]]]:
    """(fixes, frames with imu/info/image, role -> (topic, msgtype))."""
    from rosbags.highlevel import AnyReader

    fixes: list[tuple[int, Any]] = []
    frames: dict[int, dict[str, Any]] = {}
    msgtypes: dict[str, tuple[str, str]] = {}
    with AnyReader([bag]) as reader:
        for conn, t_ns, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            role = {"Image": "image", "CameraInfo": "info", "Imu": "imu"}.get(
                conn.msgtype.rsplit("/", 1)[-1], "fix"
            )
            msgtypes[role] = (conn.topic, conn.msgtype)
            if role == "fix":
                fixes.append((t_ns, msg))
            else:
                frames.setdefault(t_ns, {"stamp_ns": t_ns})[role] = msg
    return fixes, [frames[t] for t in sorted(frames)], msgtypes


def _write_mutated(
    flight: Flight, path: Path, rng: np.random.Generator
) -> list[tuple[str, int, int]]:
    """Write the mutated bag; returns (mutation, header stamp ns, truth stamp ns) per image
    message in arrival order."""
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.LATEST)
    fixes, frames, msgtypes = _read_base(flight.bag)
    names = sorted(MUTATIONS)
    events: list[tuple[int, str, Any, str, int]] = []  # (log ns, role, msg, mutation, truth)
    for p in range(PASSES):
        shift = p * PASS_SHIFT_NS
        for t_ns, fix in fixes:
            events.append((t_ns + shift, "fix", _restamp(ts.types, fix, t_ns + shift), "", 0))
        for i, base in enumerate(frames):
            t = base["stamp_ns"] + shift
            b: dict[str, Any] = {
                "image": _restamp(ts.types, base["image"], t),
                "info": _restamp(ts.types, base["info"], t),
                "imu": _restamp(ts.types, base["imu"], t),
                "stamp_ns": t,
                "events": [],
                "imu_after_image": False,
                "delay_image": False,
            }
            # The first frames of a pass stay clean: the node must have a camera first.
            name = "none" if i < 2 or rng.random() < 0.08 else names[rng.integers(len(names))]
            if name != "none":
                MUTATIONS[name][1](b, ts.types)
            truth = base["stamp_ns"]
            if b["imu"] is not None:
                events.append((t + (5 if b["imu_after_image"] else 1), "imu", b["imu"], "", 0))
            events.append((t + 2, "info", b["info"], "", 0))
            image_t = t + 3 + (1_000_000_001 if b["delay_image"] else 0)  # after the next
            events.append((image_t, "image", b["image"], name, truth))
            for offset, role, msg in b["events"]:
                events.append((t + offset, role, msg, name, truth))
    events.sort(key=lambda e: e[0])
    writer = open_writer(path, "mcap")
    with writer:
        conns = {
            role: writer.add_connection(topic, msgtype, typestore=ts)
            for role, (topic, msgtype) in msgtypes.items()
        }
        for t_ns, role, msg, _, _ in events:
            writer.write(conns[role], t_ns, ts.serialize_cdr(msg, msgtypes[role][1]))
    return [
        (name, _stamp_ns(msg), truth) for _, role, msg, name, truth in events if role == "image"
    ]


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def test_mutated_bags_never_give_a_confident_wrong_pose(flight: Flight, tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED)
    emitted = _write_mutated(flight, tmp_path / "mutated", rng)
    mutated = sum(1 for name, _, _ in emitted if name != "none")
    assert mutated >= MIN_MUTATED_FRAMES

    pipeline = Pipeline.from_params_file(flight.params)
    before: list[dict[str, int]] = [{}]
    moved: list[set[str]] = []  # skip counters that moved since the previous image

    def on_frame(rec: Any, result: Any) -> None:
        now = pipeline.stats_snapshot()["skipped"]
        moved.append({k for k, v in now.items() if v > before[0].get(k, 0)})
        before[0] = now

    records, _ = replay_pipeline(tmp_path / "mutated", pipeline, on_frame=on_frame)
    assert len(records) == len(emitted)

    enu = LocalEnu(*pipeline.configs.node.map_origin)  # type: ignore[misc]
    false_confident: list[str] = []
    ok_by_kind: collections.Counter[str] = collections.Counter()
    seen_by_kind: collections.Counter[str] = collections.Counter()
    refused_wrongly: list[str] = []
    for rec, (name, stamp_ns, truth_stamp), keys in zip(records, emitted, moved, strict=True):
        assert rec.stamp_ns == stamp_ns
        seen_by_kind[name] += 1
        expectation, _, counter = MUTATIONS.get(name, ("may_pass", None, ""))
        est = rec.estimate
        if expectation == "refuse" and est.ok:
            refused_wrongly.append(f"{name}@{stamp_ns}: ok pose from a bad input")
        if counter and not any(k.startswith(counter) for k in keys):
            refused_wrongly.append(f"{name}@{stamp_ns}: {counter} not counted: {keys}")
        if not est.ok:
            continue
        ok_by_kind[name] += 1
        lat, lon = flight.truth_lat_lon[truth_stamp]
        te, tn = enu.to_en(lat, lon)
        err = np.array([est.east_m - float(te), est.north_m - float(tn)])
        cov = published_covariance(est.cov_en_yaw)[:2, :2]
        nees = float(err @ np.linalg.solve(cov, err))
        if nees > 9.0:
            sigma = np.sqrt(np.diag(cov))
            false_confident.append(
                f"{name}@{stamp_ns}: error {np.hypot(*err):.2f} m, sigma {sigma.round(2)} m"
            )
    assert not refused_wrongly, refused_wrongly
    assert not false_confident, false_confident

    snap = pipeline.stats_snapshot()
    # Every duplicate's second copy was dropped, and the IMU fallbacks were counted.
    assert snap["skipped"].get("image:duplicate_stamp", 0) == seen_by_kind["duplicate_stamp"] // 2
    assert sum(snap["attitude_fallbacks"].values()) >= seen_by_kind["imu_dropped"]
    assert snap["images_out_of_order"] >= 1
    # Not vacuous: clean frames and harmless mutations localize.
    clean = seen_by_kind["none"] + seen_by_kind["bgr8_label"] + seen_by_kind["padded_rows"]
    clean_ok = ok_by_kind["none"] + ok_by_kind["bgr8_label"] + ok_by_kind["padded_rows"]
    assert clean >= 10 and clean_ok >= 0.8 * clean, (clean_ok, clean)
    assert ok_by_kind["imu_dropped"] + ok_by_kind["stamp_offset_from_imu"] >= 1
