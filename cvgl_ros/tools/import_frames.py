"""``cvgl-ros import-frames``: a folder of geotagged camera frames -> a replayable bag + truth.

Real frames (a drone survey, a dash-cam dump) are the test that renders of a map cannot replace.
This command turns a folder of frames with known poses into the same inputs a synthetic flight
gives (:mod:`cvgl_ros.tools.synth`): a ROS 2 bag (``/camera/image_raw`` ``sensor_msgs/Image``
rgb8, ``/camera/camera_info``, ``/gnss/fix`` ``NavSatFix`` and, with a heading sensor,
``/imu/data``) and ``truth.csv`` for ``cvgl-ros eval``.

Truth CSV (``--truth``), one row per frame; columns (case-sensitive):

- ``frame_file`` (or ``frame``/``image``): the frame, relative to the CSV's folder or ``DIR``;
- position: ``lat_deg`` + ``lon_deg``; or projected ``easting_m`` + ``northing_m`` with
  ``--crs`` (any pyproj CRS), or ``utm<zone><n|s>_easting_m`` + ``..._northing_m`` (the CRS is
  then read from the name, e.g. ``utm15n`` = EPSG:32615);
- ``altitude_m`` (optional): camera altitude, same vertical datum as the fixes it produces;
- heading (optional): ``yaw_enu_rad`` (ENU yaw of the body +x axis = the image's "up" for a
  nadir camera), ``heading_deg`` (the image's up direction, degrees clockwise from true
  north) or ``image_up_heading_deg_cw_from_north`` / ``grid_heading_deg`` (clockwise from
  the grid north of the projected CRS, converted with its meridian convergence);
- intrinsics (optional): ``focal_px`` (square pixels, principal point at the image centre) or
  ``fx_px, fy_px, cx_px, cy_px``; else ``--focal-px``; else the EXIF focal ratio;
- stamps (optional): ``stamp_ns`` or ``stamp_s``; else the EXIF capture time; else one frame
  every ``1 / --rate-hz`` seconds.

EXIF (``--exif [DIR]``): OpenDroneMap's ``<frame>.exif.json`` files (``gps.latitude``,
``gps.longitude``, ``gps.altitude``, ``capture_time``, ``focal_ratio``) looked up in DIR
(default: ``DIR/../exif``, then ``DIR``), or the JPEG's own EXIF (GPS IFD, DateTimeOriginal,
FocalLengthIn35mmFilm) read with Pillow.

The GNSS prior (``--prior``):

- ``truth`` (default): the true position plus a constant bias (``--prior-bias-m E N``, or drawn
  once per run from N(0, ``--prior-bias-sigma-m``) per axis) and white noise
  (``--prior-noise-m``), altitude plus N(0, ``--altitude-noise-m``): a consumer receiver whose
  error the evaluation knows;
- ``exif``: the camera's own recorded GPS fix (with photogrammetric truth this is nearly the
  truth itself, because the survey was georeferenced with it).

The fix reports ``--prior-sigma-m`` per axis (covariance type DIAGONAL_KNOWN). With
``--heading-sigma-deg S`` an ``Imu`` message per frame carries the true yaw plus N(0, S)
(a compass/heading sensor; REP-145 ENU orientation) with roll = pitch = 0 (not measured: their
covariance says so) and the yaw variance S².
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.core.camera import PinholeCamera
from cvgl_ros.core.geodesy import LocalEnu, wrap_angle_rad
from cvgl_ros.core.types import UInt8Array
from cvgl_ros.tools.synth import (
    CAMERA_FRAME,
    DEFAULT_CAMERA_INFO_TOPIC,
    DEFAULT_FIX_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    DEFAULT_IMU_TOPIC,
    STORAGE_KINDS,
    BagMessageFactory,
    open_writer,
)

LOGGER = logging.getLogger(__name__)

PRIOR_KINDS: tuple[str, ...] = ("truth", "exif")
# Roll/pitch standard deviation written into the heading-only Imu messages: not measured.
UNMEASURED_TILT_SIGMA_RAD = math.radians(5.0)
# Stamps of frames without any time information start here (2023-11-14T22:13:20Z).
EPOCH_S = 1_700_000_000.0
_UTM_COLUMN = re.compile(r"^utm(\d{1,2})([ns])_easting_m$")


class FrameImportError(ValueError):
    """The frames, truth CSV or EXIF data cannot be imported (message says why)."""


@dataclass(frozen=True)
class FrameTruth:
    """One frame to import.

    Attributes:
        path: image file.
        lat_deg: true camera latitude, degrees (WGS84).
        lon_deg: true camera longitude, degrees.
        altitude_m: true camera altitude, metres (the fixes' datum), NaN if unknown.
        yaw_enu_rad: true ENU yaw of the body +x axis (image up for a nadir camera), radians;
            NaN if unknown.
        intrinsics: (fx, fy, cx, cy) pixels, or None (from EXIF / ``--focal-px``).
        stamp_s: capture time, seconds, NaN if unknown.
        exif: the frame's EXIF GPS fix ``(lat_deg, lon_deg, altitude_m)`` or None.
        exif_focal_ratio: focal length / longer image side from EXIF, NaN if unknown.
    """

    path: Path
    lat_deg: float
    lon_deg: float
    altitude_m: float = math.nan
    yaw_enu_rad: float = math.nan
    intrinsics: tuple[float, float, float, float] | None = None
    stamp_s: float = math.nan
    exif: tuple[float, float, float] | None = None
    exif_focal_ratio: float = math.nan


@dataclass(frozen=True)
class PriorConfig:
    """How the GNSS prior of each frame is made.

    Attributes:
        kind: ``truth`` (truth + bias + noise) or ``exif`` (the recorded GPS fix).
        bias_m: constant (east, north) bias, metres; None = drawn from ``bias_sigma_m``.
        bias_sigma_m: per-axis standard deviation of the drawn bias, metres.
        noise_m: per-axis white noise, metres.
        altitude_noise_m: white noise on the altitude, metres.
        reported_sigma_m: per-axis sigma written in the NavSatFix covariance, metres.
        seed: random seed.
    """

    kind: str = "truth"
    bias_m: tuple[float, float] | None = None
    bias_sigma_m: float = 3.5
    noise_m: float = 1.0
    altitude_noise_m: float = 1.5
    reported_sigma_m: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in PRIOR_KINDS:
            raise ValueError(f"prior kind must be one of {PRIOR_KINDS}, got {self.kind!r}")
        for name in ("bias_sigma_m", "noise_m", "altitude_noise_m"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"{name} must be >= 0, got {v}")
        if not (math.isfinite(self.reported_sigma_m) and self.reported_sigma_m > 0.0):
            raise ValueError(f"reported_sigma_m must be > 0, got {self.reported_sigma_m}")


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_frames` wrote.

    Attributes:
        bag_path: the bag directory.
        truth_csv: ``stamp_ns,lat_deg,lon_deg,yaw_enu_rad`` of every frame.
        meta_json: ``import.json`` (sources, prior statistics).
        num_frames: frames written.
        prior_errors_m: horizontal error of each frame's prior, metres.
    """

    bag_path: Path
    truth_csv: Path
    meta_json: Path
    num_frames: int
    prior_errors_m: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


def _float(row: dict[str, str], name: str) -> float:
    text = (row.get(name) or "").strip()
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError as exc:
        raise FrameImportError(f"column {name!r}: {text!r} is not a number") from exc


def _projected_crs(columns: list[str], crs: str | None) -> tuple[str, str, str] | None:
    """(crs, easting column, northing column) of a projected position, or None."""
    for col in columns:
        m = _UTM_COLUMN.match(col)
        if m:
            zone, hemi = int(m.group(1)), m.group(2)
            if not 1 <= zone <= 60:
                raise FrameImportError(f"column {col!r}: UTM zone {zone} does not exist")
            code = f"EPSG:{(32600 if hemi == 'n' else 32700) + zone}"
            return code, col, col.replace("_easting_m", "_northing_m")
    if "easting_m" in columns and "northing_m" in columns:
        if not crs:
            raise FrameImportError("easting_m/northing_m columns need --crs (e.g. EPSG:32615)")
        return crs, "easting_m", "northing_m"
    return None


def read_truth_csv(path: Path, frames_dir: Path, crs: str | None = None) -> list[FrameTruth]:
    """Read the truth CSV (see the module docstring) into frame records, EXIF not yet read.

    Raises:
        FrameImportError: missing file, columns or frames, or unparseable values.
    """
    if not path.is_file():
        raise FrameImportError(f"truth CSV not found: {path}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if not rows:
        raise FrameImportError(f"{path}: no rows")
    name_col = next((c for c in ("frame_file", "frame", "image") if c in columns), None)
    if name_col is None:
        raise FrameImportError(
            f"{path}: needs a frame_file (or frame/image) column; has {columns}"
        )
    projected = _projected_crs(columns, crs)
    if projected is None and not {"lat_deg", "lon_deg"} <= set(columns):
        raise FrameImportError(
            f"{path}: needs lat_deg/lon_deg, utm<zone><n|s>_easting_m/_northing_m or "
            f"easting_m/northing_m (+ --crs) columns; has {columns}"
        )
    to_lonlat = None
    if projected is not None:
        from pyproj import Transformer

        try:
            to_lonlat = Transformer.from_crs(projected[0], "EPSG:4326", always_xy=True)
        except Exception as exc:  # pyproj raises CRSError for unknown codes
            raise FrameImportError(f"unknown CRS {projected[0]!r}: {exc}") from exc
    records: list[FrameTruth] = []
    for i, row in enumerate(rows):
        where = f"{path}: row {i + 2}"
        name = (row.get(name_col) or "").strip()
        image_path = _find_frame(name, path.parent, frames_dir)
        if image_path is None:
            raise FrameImportError(
                f"{where}: frame {name!r} not found in {path.parent} or {frames_dir}"
            )
        try:
            if projected is not None and to_lonlat is not None:
                east, north = _float(row, projected[1]), _float(row, projected[2])
                lon, lat = to_lonlat.transform(east, north)
            else:
                lat, lon = _float(row, "lat_deg"), _float(row, "lon_deg")
            if not (math.isfinite(lat) and math.isfinite(lon)):
                raise FrameImportError("position is missing or not finite")
            yaw = _yaw_from_row(row, lat, lon, projected[0] if projected else None)
            intr = _intrinsics_from_row(row)
            stamp = _float(row, "stamp_s")
            if not math.isfinite(stamp) and (row.get("stamp_ns") or "").strip():
                stamp = int(row["stamp_ns"]) * 1e-9
        except (FrameImportError, ValueError) as exc:
            raise FrameImportError(f"{where}: {exc}") from exc
        records.append(
            FrameTruth(
                path=image_path,
                lat_deg=float(lat),
                lon_deg=float(lon),
                altitude_m=_float(row, "altitude_m"),
                yaw_enu_rad=yaw,
                intrinsics=intr,
                stamp_s=stamp,
            )
        )
    return records


def _find_frame(name: str, *dirs: Path) -> Path | None:
    if not name:
        return None
    for base in dirs:
        candidate = base / name
        if candidate.is_file():
            return candidate
        candidate = base / Path(name).name
        if candidate.is_file():
            return candidate
    return None


def _yaw_from_row(row: dict[str, str], lat: float, lon: float, crs: str | None) -> float:
    yaw = _float(row, "yaw_enu_rad")
    if math.isfinite(yaw):
        return float(wrap_angle_rad(yaw))
    heading = _float(row, "heading_deg")
    if math.isfinite(heading):
        return float(wrap_angle_rad(math.radians(90.0 - heading)))
    for col in ("image_up_heading_deg_cw_from_north", "grid_heading_deg"):
        grid = _float(row, col)
        if math.isfinite(grid):
            if crs is None:
                raise FrameImportError(f"{col} needs a projected position (grid north)")
            heading = grid + grid_north_azimuth_deg(crs, lat, lon)
            return float(wrap_angle_rad(math.radians(90.0 - heading)))
    return math.nan


def grid_north_azimuth_deg(crs: str, lat_deg: float, lon_deg: float) -> float:
    """True azimuth of a projected CRS's grid north at a point, degrees clockwise from north.

    (The negative of the meridian convergence; about +0.73 deg at 46.84 N, 91.99 W in UTM 15N.)
    """
    from pyproj import Geod, Transformer

    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    inv = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    east, north = fwd.transform(lon_deg, lat_deg)
    lon2, lat2 = inv.transform(east, north + 100.0)
    azimuth, _, _ = Geod(ellps="WGS84").inv(lon_deg, lat_deg, lon2, lat2)
    return float(azimuth)


def _intrinsics_from_row(row: dict[str, str]) -> tuple[float, float, float, float] | None:
    fx, fy, cx, cy = (_float(row, c) for c in ("fx_px", "fy_px", "cx_px", "cy_px"))
    if all(math.isfinite(v) for v in (fx, fy, cx, cy)):
        return fx, fy, cx, cy
    f = _float(row, "focal_px")
    if math.isfinite(f):
        return f, f, math.nan, math.nan  # principal point: the image centre, once known
    return None


def read_image_rgb(path: Path) -> UInt8Array:
    """(H, W, 3) uint8 RGB of a JPEG/PNG/TIFF frame (8-bit; alpha dropped).

    Raises:
        FrameImportError: unreadable or not an 8-bit colour/grey image.
    """
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise FrameImportError(f"cannot read image {path}")
    if data.dtype != np.uint8:
        raise FrameImportError(f"{path}: {data.dtype} image; only 8-bit frames are supported")
    if data.ndim == 2:
        return np.ascontiguousarray(np.repeat(data[:, :, None], 3, axis=2))
    if data.ndim == 3 and data.shape[2] in (3, 4):
        return np.ascontiguousarray(data[:, :, 2::-1])
    raise FrameImportError(f"{path}: unsupported image shape {data.shape}")


def read_exif(frame: Path, exif_dir: Path | None) -> dict[str, float]:
    """GPS fix, capture time and focal ratio of a frame from EXIF.

    Looks for OpenDroneMap's ``<name>.exif.json`` (in ``exif_dir``, ``frame.parent/../exif``
    and ``frame.parent``; the ``.tif`` suffix of ODM's resized copies is dropped), then the
    image's own EXIF through Pillow.

    Returns:
        Any of ``lat_deg``, ``lon_deg``, ``altitude_m``, ``capture_time_s``, ``focal_ratio``
        (focal length / longer image side) that were found.
    """
    names = [f"{frame.name}.exif.json"]
    if frame.suffix.lower() in (".tif", ".tiff"):
        names.append(f"{frame.stem}.exif.json")
    dirs = [d for d in (exif_dir, frame.parent.parent / "exif", frame.parent) if d is not None]
    for d in dirs:
        for name in names:
            path = d / name
            if path.is_file():
                return _odm_exif(path)
    return _pillow_exif(frame)


def _odm_exif(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FrameImportError(f"{path}: not a readable EXIF JSON ({exc})") from exc
    out: dict[str, float] = {}
    gps = data.get("gps") or {}
    for key, name in (
        ("latitude", "lat_deg"),
        ("longitude", "lon_deg"),
        ("altitude", "altitude_m"),
    ):
        if key in gps and gps[key] is not None:
            out[name] = float(gps[key])
    if data.get("capture_time") is not None:
        out["capture_time_s"] = float(data["capture_time"])
    if data.get("focal_ratio"):
        out["focal_ratio"] = float(data["focal_ratio"])
    return out


def _pillow_exif(path: Path) -> dict[str, float]:
    try:
        from PIL import ExifTags, Image
    except ImportError:  # Pillow is optional: no EXIF then
        return {}
    try:
        with Image.open(path) as img:
            exif = img.getexif()
            size = img.size
    except OSError:
        return {}
    out: dict[str, float] = {}
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    if gps:

        def dms(values: Any, ref: Any, negative: str) -> float:
            deg = float(values[0]) + float(values[1]) / 60.0 + float(values[2]) / 3600.0
            return -deg if str(ref).upper().startswith(negative) else deg

        try:
            out["lat_deg"] = dms(gps[2], gps.get(1, "N"), "S")
            out["lon_deg"] = dms(gps[4], gps.get(3, "E"), "W")
            if 6 in gps:
                out["altitude_m"] = float(gps[6]) * (
                    -1.0 if gps.get(5, 0) in (1, b"\x01") else 1.0
                )
        except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
            out.pop("lat_deg", None)
            out.pop("lon_deg", None)
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    focal35 = sub.get(0xA405)  # FocalLengthIn35mmFilm
    if focal35:
        out["focal_ratio"] = float(focal35) / 36.0  # over the longer side of 36 x 24 mm
    when = sub.get(0x9003)  # DateTimeOriginal
    if when:
        import datetime

        try:
            t = datetime.datetime.strptime(str(when), "%Y:%m:%d %H:%M:%S")
            out["capture_time_s"] = t.replace(tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            pass
    del size
    return out


# --------------------------------------------------------------------------- writing


def _camera_for(
    record: FrameTruth, width: int, height: int, focal_px: float | None, focal_ratio: float
) -> PinholeCamera:
    cx0, cy0 = (width - 1) / 2.0, (height - 1) / 2.0
    if record.intrinsics is not None:
        fx, fy, cx, cy = record.intrinsics
        if not math.isfinite(cx):
            cx, cy = cx0, cy0
    elif focal_px is not None:
        fx = fy = float(focal_px)
        cx, cy = cx0, cy0
    elif math.isfinite(focal_ratio) and focal_ratio > 0.0:
        fx = fy = focal_ratio * max(width, height)
        cx, cy = cx0, cy0
    else:
        raise FrameImportError(
            f"{record.path}: no intrinsics (give focal_px/fx_px.. columns, --focal-px or EXIF)"
        )
    return PinholeCamera(width, height, fx, fy, cx, cy)


def import_frames(
    frames_dir: str | Path,
    truth_csv: str | Path,
    out_dir: str | Path,
    prior: PriorConfig | None = None,
    *,
    exif_dir: str | Path | None = None,
    use_exif: bool = False,
    crs: str | None = None,
    focal_px: float | None = None,
    heading_sigma_deg: float | None = None,
    rate_hz: float = 1.0,
    storage: str = "mcap",
    bag_name: str = "bag",
) -> ImportResult:
    """Write the bag, ``truth.csv`` and ``import.json`` for a folder of geotagged frames.

    Args:
        frames_dir: folder of the frames (names as in the truth CSV).
        truth_csv: the truth CSV (module docstring).
        out_dir: output folder (created); the bag goes to ``out_dir/bag_name``.
        prior: how the GNSS prior is made (``kind="exif"`` needs EXIF).
        exif_dir: folder of ODM ``*.exif.json`` files (default: ``frames_dir/../exif``).
        use_exif: read EXIF (capture times, focal ratio, GPS) even for a ``truth`` prior.
        crs: CRS of ``easting_m``/``northing_m`` truth columns.
        focal_px: focal length, pixels, for frames without intrinsics columns.
        heading_sigma_deg: write a heading-only ``Imu`` per frame with this yaw noise, degrees;
            None = no IMU topic.
        rate_hz: frame rate used when no stamps are known.
        storage: ``mcap`` or ``sqlite3``.
        bag_name: bag directory name.

    Returns:
        Paths and prior statistics.

    Raises:
        FrameImportError: unreadable inputs, missing intrinsics or EXIF, or an existing bag.
    """
    prior = prior or PriorConfig()
    frames = Path(frames_dir)
    if not frames.is_dir():
        raise FrameImportError(f"frames folder not found: {frames}")
    if storage not in STORAGE_KINDS:
        raise FrameImportError(f"storage must be one of {STORAGE_KINDS}, got {storage!r}")
    if not (math.isfinite(rate_hz) and rate_hz > 0.0):
        raise FrameImportError(f"rate_hz must be > 0, got {rate_hz}")
    if heading_sigma_deg is not None and not (
        math.isfinite(heading_sigma_deg) and heading_sigma_deg > 0.0
    ):
        raise FrameImportError(f"heading_sigma_deg must be > 0, got {heading_sigma_deg}")
    records = read_truth_csv(Path(truth_csv), frames, crs)
    want_exif = use_exif or prior.kind == "exif"
    exif_base = Path(exif_dir) if exif_dir is not None else None
    exifs = [read_exif(r.path, exif_base) if want_exif else {} for r in records]
    if prior.kind == "exif":
        missing = [r.path.name for r, e in zip(records, exifs, strict=True) if "lat_deg" not in e]
        if missing:
            raise FrameImportError(
                f"no EXIF GPS fix for {missing[:3]}{'...' if len(missing) > 3 else ''}"
            )
    stamps = _stamps(records, exifs, rate_hz)
    order = np.argsort(stamps, kind="stable")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bag_path = out / bag_name
    if bag_path.exists():
        raise FrameImportError(f"{bag_path} exists; choose another --out or remove it")
    rng = np.random.default_rng(prior.seed)
    bias = (
        np.asarray(prior.bias_m, dtype=np.float64)
        if prior.bias_m is not None
        else rng.normal(0.0, prior.bias_sigma_m, 2)
    )
    heading_sigma = None if heading_sigma_deg is None else math.radians(heading_sigma_deg)
    fac = BagMessageFactory()
    ts = fac.typestore
    truth_rows: list[tuple[int, float, float, float]] = []
    prior_errors: list[float] = []
    with open_writer(bag_path, storage) as writer:
        c_img = writer.add_connection(DEFAULT_IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=ts)
        c_info = writer.add_connection(
            DEFAULT_CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo", typestore=ts
        )
        c_fix = writer.add_connection(DEFAULT_FIX_TOPIC, "sensor_msgs/msg/NavSatFix", typestore=ts)
        c_imu = (
            writer.add_connection(DEFAULT_IMU_TOPIC, "sensor_msgs/msg/Imu", typestore=ts)
            if heading_sigma is not None
            else None
        )
        for i in order:
            rec, exif, stamp_s = records[i], exifs[i], float(stamps[i])
            rgb = read_image_rgb(rec.path)
            cam = _camera_for(
                rec, rgb.shape[1], rgb.shape[0], focal_px, exif.get("focal_ratio", math.nan)
            )
            enu = LocalEnu(rec.lat_deg, rec.lon_deg)
            if prior.kind == "exif":
                lat, lon = exif["lat_deg"], exif["lon_deg"]
                alt = exif.get("altitude_m", math.nan)
            else:
                err = bias + rng.normal(0.0, prior.noise_m, 2)
                la, lo = enu.to_wgs84(np.array([err[0]]), np.array([err[1]]))
                lat, lon = float(la[0]), float(lo[0])
                alt = rec.altitude_m + float(rng.normal(0.0, prior.altitude_noise_m))
            pe, pn = enu.to_en(lat, lon)
            prior_errors.append(math.hypot(float(pe), float(pn)))
            stamp_ns = round(stamp_s * 1e9)
            fix = fac.navsatfix(lat, lon, prior.reported_sigma_m, stamp_s, True, altitude_m=alt)
            writer.write(c_fix, stamp_ns, ts.serialize_cdr(fix, "sensor_msgs/msg/NavSatFix"))
            if c_imu is not None and heading_sigma is not None:
                if not math.isfinite(rec.yaw_enu_rad):
                    raise FrameImportError(f"{rec.path.name}: --heading-sigma-deg needs a heading")
                yaw = rec.yaw_enu_rad + float(rng.normal(0.0, heading_sigma))
                msg = fac.heading_imu(yaw, heading_sigma, UNMEASURED_TILT_SIGMA_RAD, stamp_s)
                writer.write(c_imu, stamp_ns, ts.serialize_cdr(msg, "sensor_msgs/msg/Imu"))
            info = fac.camera_info(cam, stamp_s, CAMERA_FRAME)
            writer.write(c_info, stamp_ns, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            img = fac.image(rgb, stamp_s, CAMERA_FRAME)
            writer.write(c_img, stamp_ns, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))
            truth_rows.append((stamp_ns, rec.lat_deg, rec.lon_deg, rec.yaw_enu_rad))

    truth_path = out / "truth.csv"
    with truth_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["stamp_ns", "lat_deg", "lon_deg", "yaw_enu_rad"])
        for stamp_ns, lat, lon, yaw in truth_rows:
            w.writerow(
                [stamp_ns, f"{lat:.10f}", f"{lon:.10f}", "" if math.isnan(yaw) else f"{yaw:.6f}"]
            )
    meta = {
        "frames_dir": str(frames),
        "truth_csv": str(truth_csv),
        "bag": bag_path.name,
        "storage": storage,
        "num_frames": len(truth_rows),
        "prior": {
            "kind": prior.kind,
            "bias_m": [float(b) for b in bias] if prior.kind == "truth" else None,
            "noise_m": prior.noise_m,
            "altitude_noise_m": prior.altitude_noise_m,
            "reported_sigma_m": prior.reported_sigma_m,
            "seed": prior.seed,
            "errors_m": prior_errors,
            "median_error_m": float(np.median(prior_errors)) if prior_errors else math.nan,
        },
        "heading_sigma_deg": heading_sigma_deg,
        "topics": {
            "image": DEFAULT_IMAGE_TOPIC,
            "camera_info": DEFAULT_CAMERA_INFO_TOPIC,
            "fix": DEFAULT_FIX_TOPIC,
            "imu": DEFAULT_IMU_TOPIC if c_imu is not None else None,
        },
    }
    meta_path = out / "import.json"
    meta_path.write_text(json.dumps(meta, indent=2))
    return ImportResult(bag_path, truth_path, meta_path, len(truth_rows), prior_errors)


def _stamps(
    records: list[FrameTruth], exifs: list[dict[str, float]], rate_hz: float
) -> np.ndarray:
    """Capture time of each frame: the CSV's, else EXIF's, else ``EPOCH_S + i / rate_hz``."""
    out = np.empty(len(records))
    for i, (rec, exif) in enumerate(zip(records, exifs, strict=True)):
        if math.isfinite(rec.stamp_s):
            out[i] = rec.stamp_s
        elif "capture_time_s" in exif:
            out[i] = exif["capture_time_s"]
        else:
            out[i] = EPOCH_S + i / rate_hz
    if len(np.unique(out)) != len(out):
        raise FrameImportError("two frames share a capture time; give stamp_s/stamp_ns columns")
    return out


# --------------------------------------------------------------------------- CLI


def _main(args: argparse.Namespace) -> int:
    kind = args.prior
    if kind == "auto":  # the recorded GPS when EXIF is asked for, else truth + error
        kind = "exif" if args.exif is not None else "truth"
    try:
        return _run(args, kind)
    except (FrameImportError, ValueError, OSError) as exc:
        import sys

        print(f"cvgl-ros import-frames: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, kind: str) -> int:
    prior = PriorConfig(
        kind=kind,
        bias_m=tuple(args.prior_bias_m) if args.prior_bias_m else None,
        bias_sigma_m=args.prior_bias_sigma_m,
        noise_m=args.prior_noise_m,
        altitude_noise_m=args.altitude_noise_m,
        reported_sigma_m=args.prior_sigma_m,
        seed=args.seed,
    )
    exif_dir = args.exif if args.exif not in (None, "") else None
    res = import_frames(
        args.frames_dir,
        args.truth,
        args.out,
        prior,
        exif_dir=exif_dir,
        use_exif=args.exif is not None,
        crs=args.crs,
        focal_px=args.focal_px,
        heading_sigma_deg=args.heading_sigma_deg,
        rate_hz=args.rate_hz,
        storage=args.storage,
    )
    errs = np.asarray(res.prior_errors_m)
    print(
        f"{res.num_frames} frames -> {res.bag_path} (truth: {res.truth_csv}); GNSS prior "
        f"({prior.kind}) median error {float(np.median(errs)):.2f} m, "
        f"max {float(errs.max()):.2f} m"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``import-frames`` subcommand."""
    p = sub.add_parser(
        "import-frames",
        help="geotagged frames + truth CSV -> replayable bag + truth.csv",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("frames_dir", help="folder of the frames")
    p.add_argument("--truth", required=True, help="truth CSV (see docs/EVALUATION.md)")
    p.add_argument("--out", required=True, help="output folder (bag/, truth.csv, import.json)")
    p.add_argument(
        "--exif",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="read EXIF (ODM *.exif.json in DIR, default FRAMES/../exif, or the JPEG's own); "
        "the prior is then the EXIF GPS unless --prior truth",
    )
    p.add_argument("--prior", choices=("auto", *PRIOR_KINDS), default="auto")
    p.add_argument("--prior-bias-m", type=float, nargs=2, metavar=("E", "N"), default=None)
    p.add_argument("--prior-bias-sigma-m", type=float, default=3.5)
    p.add_argument("--prior-noise-m", type=float, default=1.0)
    p.add_argument("--prior-sigma-m", type=float, default=5.0, help="reported sigma per axis")
    p.add_argument("--altitude-noise-m", type=float, default=1.5)
    p.add_argument("--heading-sigma-deg", type=float, default=None)
    p.add_argument("--crs", default=None, help="CRS of easting_m/northing_m columns")
    p.add_argument("--focal-px", type=float, default=None)
    p.add_argument("--rate-hz", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage", choices=STORAGE_KINDS, default="mcap")
    p.set_defaults(func=_main)
