"""cvgl-ros import-frames: geotagged frames + truth CSV -> bag + truth.csv."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.tools.cli import main as cli_main
from cvgl_ros.tools.import_frames import (
    FrameImportError,
    PriorConfig,
    grid_north_azimuth_deg,
    import_frames,
)

pytest.importorskip("rosbags")

LAT0, LON0 = 46.8426, -91.9944


def _frames(folder: Path, n: int = 3, ext: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        p = folder / f"f{i}{ext}"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _read_bag(bag: Path) -> dict[str, list[object]]:
    from cvgl_ros.tools.bags import BagTopics, iter_bag

    out: dict[str, list[object]] = {}
    for role, _t, msg in iter_bag(bag, BagTopics()):
        out.setdefault(role, []).append(msg)
    return out


def test_lat_lon_truth_with_heading_sensor(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "frames")
    enu = LocalEnu(LAT0, LON0)
    rows = []
    for i, p in enumerate(frames):
        lat, lon = enu.to_wgs84(np.array([10.0 * i]), np.array([0.0]))
        rows.append([p.name, float(lat[0]), float(lon[0]), 200.0 + i, 30.0 * i, 70.0, 5.0 * i])
    truth = _write_csv(
        tmp_path / "truth.csv",
        ["frame", "lat_deg", "lon_deg", "altitude_m", "heading_deg", "focal_px", "stamp_s"],
        rows,
    )
    prior = PriorConfig(bias_m=(3.0, -4.0), noise_m=0.0, altitude_noise_m=0.0, seed=3)
    res = import_frames(
        tmp_path / "frames", truth, tmp_path / "out", prior, heading_sigma_deg=1e-6
    )
    assert res.num_frames == 3
    assert res.prior_errors_m == pytest.approx([5.0, 5.0, 5.0], abs=1e-3)
    msgs = _read_bag(res.bag_path)
    assert {k: len(v) for k, v in msgs.items()} == {
        "fix": 3, "imu": 3, "camera_info": 3, "image": 3
    }  # fmt: skip
    info = msgs["camera_info"][0]
    assert list(info.k) == pytest.approx([70.0, 0, 39.5, 0, 70.0, 29.5, 0, 0, 1])
    fix = msgs["fix"][1]
    assert fix.altitude == pytest.approx(201.0)
    assert fix.position_covariance[0] == pytest.approx(25.0)
    from cvgl_ros.core.attitude import yaw_from_quaternion_xyzw
    from cvgl_ros.ros.convert import imu_orientation_xyzw

    yaw = yaw_from_quaternion_xyzw(imu_orientation_xyzw(msgs["imu"][1]))
    assert yaw == pytest.approx(math.radians(90.0 - 30.0), abs=1e-6)
    with res.truth_csv.open() as fh:
        truth_rows = list(csv.DictReader(fh))
    assert [int(r["stamp_ns"]) for r in truth_rows] == [0, 5_000_000_000, 10_000_000_000]
    assert float(truth_rows[2]["yaw_enu_rad"]) == pytest.approx(math.radians(30.0))
    image = msgs["image"][0]
    assert (image.width, image.height, image.encoding) == (80, 60, "rgb8")
    with pytest.raises(FrameImportError, match="exists"):
        import_frames(tmp_path / "frames", truth, tmp_path / "out", prior)


def test_projected_truth_and_grid_heading(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "frames", 2)
    rows = [
        [frames[0].name, 576663.092, 5188164.957, 198.2, 42.411, 222.2],
        [frames[1].name, 576673.009, 5188174.340, 198.8, 38.180, 222.2],
    ]
    truth = _write_csv(
        tmp_path / "gt.csv",
        [
            "frame_file", "utm15n_easting_m", "utm15n_northing_m", "altitude_m",
            "image_up_heading_deg_cw_from_north", "focal_px",
        ],
        rows,
    )  # fmt: skip
    res = import_frames(tmp_path / "frames", truth, tmp_path / "out")
    with res.truth_csv.open() as fh:
        out = list(csv.DictReader(fh))
    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:32615", "EPSG:4326", always_xy=True).transform(
        576663.092, 5188164.957
    )
    assert float(out[0]["lat_deg"]) == pytest.approx(lat, abs=1e-9)
    assert float(out[0]["lon_deg"]) == pytest.approx(lon, abs=1e-9)
    # Grid north lies 0.73 deg east of true north here (east of UTM 15N's central meridian).
    gamma = grid_north_azimuth_deg("EPSG:32615", lat, lon)
    assert gamma == pytest.approx(0.733, abs=0.01)
    assert float(out[0]["yaw_enu_rad"]) == pytest.approx(
        math.radians(90.0 - 42.411 - gamma), abs=1e-6
    )


def test_jpeg_exif_gives_the_prior_stamps_and_focal(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "jpg"
    folder.mkdir()
    enu = LocalEnu(LAT0, LON0)
    rows = []
    for i in range(2):
        lat, lon = enu.to_wgs84(np.array([5.0 * i]), np.array([2.0]))
        img = Image.fromarray(np.full((48, 64, 3), 100 + 50 * i, np.uint8))
        exif = Image.Exif()
        gps = exif.get_ifd(0x8825)

        def dms(v: float) -> tuple[float, float, float]:
            d = int(abs(v))
            m = int((abs(v) - d) * 60)
            return (float(d), float(m), (abs(v) - d - m / 60) * 3600)

        exif_lat, exif_lon = float(lat[0]) + 1e-5, float(lon[0])
        gps.update({1: "N", 2: dms(exif_lat), 3: "W", 4: dms(exif_lon), 5: 0, 6: 250.5})
        sub = exif.get_ifd(0x8769)
        sub.update({0x9003: f"2024:05:01 10:00:0{i}", 0xA405: 24})
        img.save(folder / f"g{i}.jpg", exif=exif)
        rows.append([f"g{i}.jpg", float(lat[0]), float(lon[0]), 250.0])
    truth = _write_csv(tmp_path / "t.csv", ["image", "lat_deg", "lon_deg", "altitude_m"], rows)
    res = import_frames(folder, truth, tmp_path / "out", PriorConfig(kind="exif"), use_exif=True)
    msgs = _read_bag(res.bag_path)
    fix = msgs["fix"][0]
    assert fix.latitude == pytest.approx(float(rows[0][1]) + 1e-5, abs=1e-7)
    assert fix.longitude == pytest.approx(float(rows[0][2]), abs=1e-7)
    assert fix.altitude == pytest.approx(250.5)
    assert res.prior_errors_m[0] == pytest.approx(1.11, abs=0.02)  # 1e-5 deg of latitude
    assert msgs["camera_info"][0].k[0] == pytest.approx(24.0 / 36.0 * 64)
    stamps = [m.header.stamp.sec for m in msgs["image"]]
    assert stamps[1] - stamps[0] == 1


def test_odm_exif_json_and_dev_set(tmp_path: Path, shared_data: Path) -> None:
    dev = shared_data / "odm_minnesota_dev"
    if not dev.is_dir():
        pytest.skip("odm_minnesota_dev not in shared data")
    res = import_frames(
        dev / "frames", dev / "ground_truth.csv", tmp_path / "exif", PriorConfig(kind="exif")
    )
    assert res.num_frames == 7
    assert max(res.prior_errors_m) < 1.5  # the survey was georeferenced with this GPS
    msgs = _read_bag(res.bag_path)
    stamps = [m.header.stamp.sec for m in msgs["image"]]
    assert stamps[0] == 1466699519 and stamps == sorted(stamps)
    assert msgs["fix"][0].altitude == pytest.approx(198.309)
    assert msgs["camera_info"][0].k[0] == pytest.approx(222.218, abs=0.01)


def test_bad_inputs_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = _frames(tmp_path / "frames", 1)
    no_focal = _write_csv(
        tmp_path / "a.csv", ["frame", "lat_deg", "lon_deg"], [[frames[0].name, LAT0, LON0]]
    )
    with pytest.raises(FrameImportError, match="no intrinsics"):
        import_frames(tmp_path / "frames", no_focal, tmp_path / "o1")
    missing = _write_csv(
        tmp_path / "b.csv", ["frame", "lat_deg", "lon_deg"], [["nope.png", LAT0, LON0]]
    )
    with pytest.raises(FrameImportError, match="not found"):
        import_frames(tmp_path / "frames", missing, tmp_path / "o2")
    no_pos = _write_csv(tmp_path / "c.csv", ["frame", "x"], [[frames[0].name, 1]])
    with pytest.raises(FrameImportError, match="lat_deg"):
        import_frames(tmp_path / "frames", no_pos, tmp_path / "o3")
    with pytest.raises(FrameImportError, match="EXIF GPS"):
        import_frames(
            tmp_path / "frames", no_focal, tmp_path / "o4", PriorConfig(kind="exif"), focal_px=50.0
        )
    code = cli_main(
        [
            "import-frames",
            str(tmp_path / "frames"),
            "--truth",
            str(missing),
            "--out",
            str(tmp_path / "o5"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "not found" in err and "Traceback" not in err
