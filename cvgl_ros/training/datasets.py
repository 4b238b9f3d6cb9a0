"""Dataset readers with one interface: VIGOR, KITTI (Shi & Li satellite crops), synthetic.

Every reader yields :class:`TrainingSample` objects: a ground image with its camera model and
mount, a north-up metric aerial patch, and the ground-truth pose of the camera in the patch
frame (``camera_en_m`` from the patch centre, ``yaw_enu_rad`` of the body +x axis). Readers
never download anything; they read the directory layouts of the public releases (documented in
``docs/TRAINING.md``) and raise :class:`DatasetError` naming the missing file.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import cv2
import numpy as np

from cvgl_ros.core.camera import CameraModel, EquirectangularCamera, PinholeCamera
from cvgl_ros.core.mount import MountKind, gravity_from_camera_for_mount
from cvgl_ros.core.types import AerialPatch, FloatArray, UInt8Array

if TYPE_CHECKING:
    from cvgl_ros.sim.render import WorldRenderer

LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

# Ground sampling distance of the 640 x 640 VIGOR aerial images per city (corrected labels of
# Lentsch et al., SliceMatch, CVPR 2023), metres per pixel.
VIGOR_M_PER_PX_640: dict[str, float] = {
    "NewYork": 0.113248,
    "Seattle": 0.100817,
    "SanFrancisco": 0.118141,
    "Chicago": 0.111262,
}
VIGOR_CITIES: tuple[str, ...] = ("NewYork", "Seattle", "SanFrancisco", "Chicago")
VIGOR_SPLITS: tuple[str, ...] = (
    "same_area_train",
    "same_area_test",
    "cross_area_train",
    "cross_area_test",
)
# Shi & Li (CVPR 2022) satellite maps: Google zoom 18 at scale 2 at KITTI's latitude.
KITTI_M_PER_PX = 156543.03392 * math.cos(math.radians(49.015)) / 2**18 / 2.0
# Position of KITTI's left colour camera (image_02) relative to the OXTS/GPS unit, body FLU.
KITTI_CAMERA_FROM_GPS_FLU_M = (1.08, -0.26)


class DatasetError(Exception):
    """A dataset directory, list or file is missing or malformed."""


@dataclass(frozen=True)
class TrainingSample:
    """One ground/aerial pair with its ground-truth pose.

    Attributes:
        sample_id: stable identifier (cache key), e.g. the image's path relative to the root.
        ground_image: (H, W, 3) uint8 RGB ground (or drone) image.
        camera: camera model of the ground image.
        gravity_from_camera: (3, 3) float64 rotation, optical -> gravity-aligned body (FLU).
        aerial: north-up metric aerial patch.
        camera_en_m: (2,) float64, metres, camera (east, north) relative to the patch centre.
        yaw_enu_rad: ENU yaw of the body +x axis, radians.
        depth_m: (H, W) float32 depth of the ground image (z-depth for pinhole, range for
            panoramas), NaN where unknown; None when the reader has none (then the configured
            depth source provides it).
        depth_is_metric: True when ``depth_m`` is in metres (the pose scale is then 1).
    """

    sample_id: str
    ground_image: UInt8Array
    camera: CameraModel
    gravity_from_camera: FloatArray
    aerial: AerialPatch
    camera_en_m: FloatArray
    yaw_enu_rad: float
    depth_m: FloatArray | None = None
    depth_is_metric: bool = True


class PairDataset(Protocol):
    """What every reader offers: a length, stable ids and samples by index."""

    name: str

    def __len__(self) -> int:
        """Number of samples."""
        ...

    def sample_id(self, index: int) -> str:
        """Stable id of sample ``index`` without loading it (cache key)."""
        ...

    def load(self, index: int) -> TrainingSample:
        """Load sample ``index``.

        Raises:
            DatasetError: a file of the sample is missing or unreadable.
        """
        ...


def read_rgb(path: Path) -> UInt8Array:
    """Read an image file as (H, W, 3) uint8 RGB.

    Raises:
        DatasetError: missing or unreadable file.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot read image {path}")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def _stable_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on (seed, key): the same sample gets the same draw."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _limit(items: list[_T], max_samples: int | None, seed: int) -> list[_T]:
    """A reproducible random subset of at most ``max_samples`` items (all when None)."""
    if max_samples is None or len(items) <= max_samples:
        return items
    keep = np.random.default_rng(seed).choice(len(items), size=max_samples, replace=False)
    return [items[i] for i in sorted(keep.tolist())]


# --------------------------------------------------------------------------------------- VIGOR


@dataclass(frozen=True)
class _VigorItem:
    city: str
    panorama: str
    satellite: str
    delta_row_px: float
    delta_col_px: float


class VigorDataset:
    """VIGOR (Zhu et al., CVPR 2021): street-view panoramas + 640 x 640 aerial images.

    Expected layout (the release, with the corrected labels of SliceMatch in
    ``splits__corrected``; the original ``splits`` works too)::

        ROOT/
          <City>/panorama/<prefix>,<lat>,<lon>,.jpg
          <City>/satellite/satellite_<lat>_<lon>.png
          splits__corrected/<City>/satellite_list.txt
          splits__corrected/<City>/same_area_balanced_train.txt
          splits__corrected/<City>/same_area_balanced_test.txt
          splits__corrected/<City>/pano_label_balanced.txt

    A label line is ``pano sat0 dr0 dc0 sat1 dr1 dc1 sat2 dr2 dc2 sat3 dr3 dc3``: the positive
    aerial image and three semi-positives with the pixel offsets (640-px image) of the panorama
    from each aerial image's centre, the panorama being at row ``320 + dr`` and column
    ``320 - dc``. Panoramas are north-aligned: the centre column faces north.

    Args:
        root: dataset root.
        split: one of :data:`VIGOR_SPLITS`; ``cross_area_train`` uses New York and Seattle,
            ``cross_area_test`` San Francisco and Chicago (the standard protocol).
        cities: restrict to these cities (default: those of the split).
        label_root: the label folder name under ``root``.
        semi_positives: also yield the semi-positive aerial images whose footprint contains
            the panorama (each pair is one sample).
        random_orientation: roll each panorama by a random (per-sample, reproducible) number
            of columns, so the yaw is unknown as in VIGOR's "unknown orientation" protocol.
        depth_dir: optional directory of precomputed depth maps
            (``<depth_dir>/<City>/panorama/<name>.npy``, range in metres).
        max_samples: keep a reproducible random subset of this size.
        seed: seed of the subset and of the orientation draws.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "same_area_train",
        cities: Sequence[str] | None = None,
        label_root: str = "splits__corrected",
        semi_positives: bool = False,
        random_orientation: bool = True,
        depth_dir: str | Path | None = None,
        max_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        if split not in VIGOR_SPLITS:
            raise ValueError(f"split must be one of {VIGOR_SPLITS}, got {split!r}")
        self.root = Path(root)
        self.name = f"vigor:{split}"
        self.random_orientation = bool(random_orientation)
        self.depth_dir = Path(depth_dir) if depth_dir else None
        self.seed = int(seed)
        if cities is None:
            cities = {
                "cross_area_train": ("NewYork", "Seattle"),
                "cross_area_test": ("SanFrancisco", "Chicago"),
            }.get(split, VIGOR_CITIES)
        unknown = [c for c in cities if c not in VIGOR_M_PER_PX_640]
        if unknown:
            raise ValueError(f"unknown VIGOR cities {unknown}; expected {VIGOR_CITIES}")
        label_dir = self.root / label_root
        if not label_dir.is_dir() and (self.root / "splits").is_dir():
            LOGGER.warning("%s not found, using the original 'splits' labels", label_dir)
            label_dir = self.root / "splits"
        file_name = {
            "same_area_train": "same_area_balanced_train.txt",
            "same_area_test": "same_area_balanced_test.txt",
        }.get(split, "pano_label_balanced.txt")
        items: list[_VigorItem] = []
        for city in cities:
            label_file = label_dir / city / file_name
            if not label_file.is_file():
                raise DatasetError(f"VIGOR label file missing: {label_file}")
            for line_no, line in enumerate(label_file.read_text().splitlines(), start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) < 13:
                    raise DatasetError(
                        f"{label_file}:{line_no}: expected 13 fields, got {len(fields)}"
                    )
                pairs = [
                    (fields[1 + 3 * k], fields[2 + 3 * k], fields[3 + 3 * k])
                    for k in range(4 if semi_positives else 1)
                ]
                for sat, dr, dc in pairs:
                    row, col = float(dr), float(dc)
                    if abs(row) >= 320.0 or abs(col) >= 320.0:
                        continue  # the panorama lies outside this semi-positive's footprint
                    items.append(_VigorItem(city, fields[0], sat, row, col))
        if not items:
            raise DatasetError(f"no VIGOR samples found under {self.root} for {split}")
        self._items = _limit(items, max_samples, self.seed)

    def __len__(self) -> int:
        return len(self._items)

    def sample_id(self, index: int) -> str:
        item = self._items[index]
        return f"{item.city}/{item.panorama}@{item.satellite}"

    def load(self, index: int) -> TrainingSample:
        item = self._items[index]
        pano = read_rgb(self.root / item.city / "panorama" / item.panorama)
        sat = read_rgb(self.root / item.city / "satellite" / item.satellite)
        h_px, w_px = sat.shape[:2]
        m_per_px = VIGOR_M_PER_PX_640[item.city] * 640.0 / w_px
        # Offsets are in 640-px units; the panorama is at (320 + dr, 320 - dc) (row, column).
        east_m = -item.delta_col_px * VIGOR_M_PER_PX_640[item.city]
        north_m = -item.delta_row_px * VIGOR_M_PER_PX_640[item.city]
        yaw = math.pi / 2.0  # north-aligned panorama: centre column (optical +z) faces north
        depth = None
        if self.depth_dir is not None:
            depth = load_depth_file(self.depth_dir / item.city / "panorama" / item.panorama)
        if self.random_orientation:
            shift = int(_stable_rng(self.seed, self.sample_id(index)).integers(pano.shape[1]))
            pano = np.ascontiguousarray(np.roll(pano, shift, axis=1))
            if depth is not None:
                depth = np.ascontiguousarray(np.roll(depth, shift, axis=1))
            # Rolling right by k columns turns the view left (counter-clockwise) by 2 pi k / W.
            yaw += 2.0 * math.pi * shift / pano.shape[1]
        aerial = AerialPatch(
            image=sat,
            m_per_px=m_per_px,
            center_lat_deg=0.0,
            center_lon_deg=0.0,
            valid_mask=np.ones((h_px, w_px), dtype=bool),
            source_id=f"vigor:{item.city}/{item.satellite}",
        )
        return TrainingSample(
            sample_id=self.sample_id(index),
            ground_image=pano,
            camera=EquirectangularCamera(pano.shape[1], pano.shape[0]),
            gravity_from_camera=gravity_from_camera_for_mount("forward"),
            aerial=aerial,
            camera_en_m=np.array([east_m, north_m]),
            yaw_enu_rad=math.remainder(yaw, 2.0 * math.pi),
            depth_m=depth,
            depth_is_metric=True,
        )


# --------------------------------------------------------------------------------------- KITTI


def read_kitti_calibration(path: Path, camera: str = "02") -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a rectified KITTI camera from ``calib_cam_to_cam.txt``.

    Raises:
        DatasetError: missing file or ``P_rect_<camera>`` line.
    """
    if not path.is_file():
        raise DatasetError(f"KITTI calibration missing: {path}")
    for line in path.read_text().splitlines():
        if line.startswith(f"P_rect_{camera}:"):
            values = [float(v) for v in line.split(":", 1)[1].split()]
            if len(values) != 12:
                raise DatasetError(f"{path}: P_rect_{camera} must have 12 values")
            return values[0], values[5], values[2], values[6]
    raise DatasetError(f"{path}: no P_rect_{camera} line")


class KittiDataset:
    """KITTI raw with the satellite maps of Shi & Li (CVPR 2022, "HighlyAccurate").

    Expected layout::

        ROOT/
          raw_data/<date>/calib_cam_to_cam.txt
          raw_data/<date>/<drive>/image_02/data/<frame>.png
          raw_data/<date>/<drive>/oxts/data/<frame>.txt
          satmap/<date>/<drive>/<frame>.png       (north-up, centred on the GPS fix)
          train_files.txt, test1_files.txt, test2_files.txt

    A list line starts with ``<date>/<drive>/<frame>.png`` (test lists append their fixed
    shifts, which are ignored: this reader draws its own). The forward camera's heading is the
    OXTS yaw (0 = east, counter-clockwise); the camera sits 1.08 m ahead of and 0.26 m to the
    right of the GPS antenna.

    Args:
        root: dataset root.
        file_list: list file name under ``root``.
        aerial_m_per_px: satellite resolution, metres per pixel (0.1958 at zoom 18, scale 2).
        aerial_crop_px: crop the satellite map to this side, centred at a random (per sample,
            reproducible) offset so the camera is not always at the patch centre; None keeps
            the whole map (the camera is then within a metre of the centre).
        depth_dir: precomputed depth maps ``<depth_dir>/<date>/<drive>/<frame>.npy`` (z-depth,
            metres) or ``.png`` (uint16, metres * 256).
        max_samples: keep a reproducible random subset.
        seed: seed of the subset and the crop offsets.
    """

    def __init__(
        self,
        root: str | Path,
        file_list: str = "train_files.txt",
        aerial_m_per_px: float = KITTI_M_PER_PX,
        aerial_crop_px: int | None = None,
        depth_dir: str | Path | None = None,
        max_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.name = f"kitti:{file_list}"
        if not aerial_m_per_px > 0:
            raise ValueError(f"aerial_m_per_px must be > 0, got {aerial_m_per_px}")
        if aerial_crop_px is not None and aerial_crop_px < 14:
            raise ValueError(f"aerial_crop_px must be >= 14, got {aerial_crop_px}")
        self.aerial_m_per_px = float(aerial_m_per_px)
        self.aerial_crop_px = aerial_crop_px
        self.depth_dir = Path(depth_dir) if depth_dir else None
        self.seed = int(seed)
        list_path = self.root / file_list
        if not list_path.is_file():
            raise DatasetError(f"KITTI file list missing: {list_path}")
        names = [ln.split()[0] for ln in list_path.read_text().splitlines() if ln.strip()]
        if not names:
            raise DatasetError(f"KITTI file list {list_path} is empty")
        self._names = _limit(names, max_samples, self.seed)
        self._calib: dict[str, tuple[float, float, float, float]] = {}

    def __len__(self) -> int:
        return len(self._names)

    def sample_id(self, index: int) -> str:
        return str(self._names[index])

    def load(self, index: int) -> TrainingSample:
        name = self._names[index]
        parts = Path(name).parts
        if len(parts) < 3:
            raise DatasetError(f"KITTI list entry {name!r} is not <date>/<drive>/<frame>.png")
        date, drive, frame = parts[-3], parts[-2], parts[-1]
        raw = self.root / "raw_data" / date / drive
        image = read_rgb(raw / "image_02" / "data" / frame.lower())
        oxts_path = raw / "oxts" / "data" / (Path(frame).stem + ".txt")
        if not oxts_path.is_file():
            raise DatasetError(f"KITTI OXTS file missing: {oxts_path}")
        oxts = oxts_path.read_text().split()
        yaw = float(oxts[5])
        if date not in self._calib:
            self._calib[date] = read_kitti_calibration(
                self.root / "raw_data" / date / "calib_cam_to_cam.txt"
            )
        fx, fy, cx, cy = self._calib[date]
        camera = PinholeCamera(image.shape[1], image.shape[0], fx, fy, cx, cy)
        sat = read_rgb(self.root / "satmap" / name)
        c, s = math.cos(yaw), math.sin(yaw)
        fx_m, fy_m = KITTI_CAMERA_FROM_GPS_FLU_M
        camera_en = np.array([c * fx_m - s * fy_m, s * fx_m + c * fy_m])
        aerial_img, centre_en = sat, np.zeros(2)
        if self.aerial_crop_px is not None and self.aerial_crop_px < min(sat.shape[:2]):
            aerial_img, centre_en = _crop_random(
                sat, self.aerial_crop_px, self.aerial_m_per_px, _stable_rng(self.seed, name)
            )
        depth = None
        if self.depth_dir is not None:
            depth = load_depth_file(self.depth_dir / date / drive / frame)
        aerial = AerialPatch(
            image=aerial_img,
            m_per_px=self.aerial_m_per_px,
            center_lat_deg=float(oxts[0]),
            center_lon_deg=float(oxts[1]),
            valid_mask=np.ones(aerial_img.shape[:2], dtype=bool),
            source_id=f"kitti:{name}",
        )
        return TrainingSample(
            sample_id=name,
            ground_image=image,
            camera=camera,
            gravity_from_camera=gravity_from_camera_for_mount("forward"),
            aerial=aerial,
            camera_en_m=camera_en - centre_en,
            yaw_enu_rad=yaw,
            depth_m=depth,
            depth_is_metric=True,
        )


def _crop_random(
    image: UInt8Array, side_px: int, m_per_px: float, rng: np.random.Generator
) -> tuple[UInt8Array, FloatArray]:
    """Crop a square of ``side_px`` at a random integer offset.

    Returns:
        The crop and the (east, north) metres of its centre relative to the image centre.
    """
    h, w = image.shape[:2]
    u0 = int(rng.integers(0, w - side_px + 1))
    v0 = int(rng.integers(0, h - side_px + 1))
    crop = np.ascontiguousarray(image[v0 : v0 + side_px, u0 : u0 + side_px])
    east = (u0 + side_px / 2.0 - w / 2.0) * m_per_px
    north = (h / 2.0 - (v0 + side_px / 2.0)) * m_per_px
    return crop, np.array([east, north])


def load_depth_file(image_path: Path) -> FloatArray:
    """Read the depth map stored for an image: ``<stem>.npy`` (float, metres) or ``<stem>.png``
    (uint16, metres * 256, KITTI convention), in the same directory layout as the image.

    Raises:
        DatasetError: neither file exists or the array is not 2-D.
    """
    npy = image_path.with_suffix(".npy")
    png = image_path.with_suffix(".png")
    if npy.is_file():
        depth = np.load(npy).astype(np.float32)
    elif png.is_file() and png != image_path:
        raw = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f"cannot read depth {png}")
        depth = raw.astype(np.float32) / 256.0
        depth[raw == 0] = np.nan
    else:
        raise DatasetError(f"no depth map for {image_path} (looked for {npy.name}, {png.name})")
    if depth.ndim == 3:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise DatasetError(f"depth map for {image_path} must be 2-D, got {depth.shape}")
    out: FloatArray = depth  # float32 values (see TrainingSample.depth_m)
    return out


# ----------------------------------------------------------------------------------- synthetic


@dataclass(frozen=True)
class SyntheticConfig:
    """Synthetic drone (nadir) or ground-level (forward) pairs rendered from orthophotos.

    Attributes:
        orthophotos: GeoTIFF paths (any CRS); each is read once as a big north-up "world".
        num_samples: pairs to generate (each is reproducible from ``seed`` and its index).
        seed: seed of the poses.
        mount: ``"nadir"`` (drone) or ``"forward"`` (ground level over flat ground).
        image_size_px: (height, width) of the rendered camera image.
        hfov_deg: horizontal field of view of the pinhole camera, degrees.
        altitude_range_m: (min, max) altitude (nadir) or camera height (forward), metres.
        pitch_deg: downward tilt of a forward camera, degrees.
        yaw_range_deg: yaw drawn uniformly in ``[-yaw_range_deg, yaw_range_deg]`` around north
            (180 = any heading).
        max_offset_m: the aerial patch centre is drawn uniformly within this distance of the
            camera (the GNSS error the matcher must correct).
        aerial_size_px: side of the aerial patch, pixels.
        aerial_m_per_px: resolution of the aerial patch, metres per pixel.
        world_size_px: side of the world patch read from each orthophoto, pixels.
        max_range_m: forward mount only: ground farther than this is rendered as sky.
    """

    orthophotos: tuple[str, ...] = ()
    num_samples: int = 64
    seed: int = 0
    mount: MountKind = "nadir"
    image_size_px: tuple[int, int] = (112, 112)
    hfov_deg: float = 70.0
    altitude_range_m: tuple[float, float] = (60.0, 90.0)
    pitch_deg: float = 10.0
    yaw_range_deg: float = 180.0
    max_offset_m: float = 10.0
    aerial_size_px: int = 112
    aerial_m_per_px: float = 1.0
    world_size_px: int = 1024
    max_range_m: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "orthophotos", tuple(str(p) for p in self.orthophotos))
        object.__setattr__(self, "image_size_px", tuple(int(v) for v in self.image_size_px))
        object.__setattr__(
            self, "altitude_range_m", tuple(float(v) for v in self.altitude_range_m)
        )
        if not self.orthophotos:
            raise ValueError("orthophotos must list at least one GeoTIFF")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.mount not in ("nadir", "forward"):
            raise ValueError(f"mount must be 'nadir' or 'forward', got {self.mount!r}")
        if len(self.image_size_px) != 2 or min(self.image_size_px) < 14:
            raise ValueError(f"image_size_px must be (h, w) >= 14, got {self.image_size_px}")
        if not 1.0 <= self.hfov_deg <= 170.0:
            raise ValueError(f"hfov_deg must be in [1, 170], got {self.hfov_deg}")
        lo, hi = self.altitude_range_m
        if not 0.0 < lo <= hi:
            raise ValueError(f"altitude_range_m must be 0 < min <= max, got {(lo, hi)}")
        if not 0.0 <= self.yaw_range_deg <= 180.0:
            raise ValueError(f"yaw_range_deg must be in [0, 180], got {self.yaw_range_deg}")
        if self.max_offset_m < 0.0:
            raise ValueError(f"max_offset_m must be >= 0, got {self.max_offset_m}")
        if self.aerial_size_px < 14:
            raise ValueError(f"aerial_size_px must be >= 14, got {self.aerial_size_px}")
        if not self.aerial_m_per_px > 0.0:
            raise ValueError(f"aerial_m_per_px must be > 0, got {self.aerial_m_per_px}")
        if self.world_size_px < self.aerial_size_px:
            raise ValueError("world_size_px must be >= aerial_size_px")
        if not self.max_range_m > 0.0:
            raise ValueError(f"max_range_m must be > 0, got {self.max_range_m}")


class SyntheticDataset:
    """Pairs rendered from georeferenced orthophotos with exactly known poses.

    The world of each orthophoto is one big north-up patch read by the tiles' GeoTIFF patch
    source; ground (or drone) images are rendered with :mod:`cvgl_ros.sim.render`; the aerial
    patch is a crop of the same world around a point near the camera (a GNSS-like offset).
    Depth is exact: the camera's altitude for a level nadir camera, the flat-ground z-depth for
    a forward camera.

    Args:
        config: what to render.
        world_m_per_px: resolution of the world patches; defaults to the aerial resolution.
    """

    def __init__(self, config: SyntheticConfig, world_m_per_px: float | None = None) -> None:
        self.config = config
        self.name = f"synthetic:{config.mount}:{config.seed}"
        self._world_m_per_px = float(world_m_per_px or config.aerial_m_per_px)
        self._worlds: dict[int, tuple[AerialPatch, WorldRenderer]] = {}
        for path in config.orthophotos:
            if not Path(path).is_file():
                raise DatasetError(f"orthophoto not found: {path}")
        h, w = config.image_size_px
        f_px = 0.5 * w / math.tan(math.radians(config.hfov_deg) / 2.0)
        self.camera = PinholeCamera(w, h, f_px, f_px, (w - 1) / 2.0, (h - 1) / 2.0)
        pitch = math.radians(config.pitch_deg) if config.mount == "forward" else 0.0
        self._pitch_rad = pitch
        self.gravity_from_camera = gravity_from_camera_for_mount(config.mount, pitch_rad=pitch)

    def __len__(self) -> int:
        return self.config.num_samples

    def sample_id(self, index: int) -> str:
        c = self.config
        key = (
            f"{sorted(c.orthophotos)}|{c.mount}|{c.image_size_px}|{c.hfov_deg}|"
            f"{c.altitude_range_m}|{c.pitch_deg}|{c.yaw_range_deg}|{c.max_offset_m}|"
            f"{c.aerial_size_px}|{c.aerial_m_per_px}|{c.world_size_px}|{c.max_range_m}"
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return f"synthetic-{digest}-s{c.seed}-{index:06d}"

    def _world(self, which: int) -> tuple[AerialPatch, WorldRenderer]:
        if which not in self._worlds:
            from cvgl_ros.sim.render import WorldRenderer
            from cvgl_ros.tiles.geotiff import GeoTiffPatchSource

            path = self.config.orthophotos[which]
            with GeoTiffPatchSource(
                path, self.config.world_size_px, self._world_m_per_px
            ) as source:
                west, south, east, north = source.bounds_lonlat
                world = source.patch_at(0.5 * (south + north), 0.5 * (west + east))
            renderer = WorldRenderer(world, max_range_m=self.config.max_range_m)
            self._worlds[which] = (world, renderer)
        return self._worlds[which]

    def load(self, index: int) -> TrainingSample:
        from cvgl_ros.sim.render import world_from_camera_rotation

        c = self.config
        if not 0 <= index < c.num_samples:
            raise IndexError(f"sample {index} out of range [0, {c.num_samples})")
        rng = _stable_rng(c.seed, f"synthetic:{index}")
        which = int(rng.integers(len(c.orthophotos)))
        world, renderer = self._world(which)
        ww, wh = world.size_px
        side = c.aerial_size_px * c.aerial_m_per_px / world.m_per_px  # aerial side, world px
        # Keep the aerial crop and the camera footprint inside the world's valid area.
        for _attempt in range(20):
            alt = float(rng.uniform(*c.altitude_range_m))
            yaw = math.pi / 2.0 + math.radians(
                float(rng.uniform(-c.yaw_range_deg, c.yaw_range_deg))
            )
            margin_px = 0.5 * side + c.max_offset_m / world.m_per_px + 1.0
            if margin_px * 2 >= min(ww, wh):
                raise DatasetError(
                    f"world of {c.orthophotos[which]} too small for the aerial patch and offsets"
                )
            u = float(rng.uniform(margin_px, ww - margin_px))
            v = float(rng.uniform(margin_px, wh - margin_px))
            cam_en = world.pixel_to_en(np.array([[u, v]]))[0]
            angle = float(rng.uniform(0.0, 2.0 * math.pi))
            radius = c.max_offset_m * math.sqrt(float(rng.uniform()))
            centre_en = cam_en + radius * np.array([math.cos(angle), math.sin(angle)])
            crop = _crop_world(world, centre_en, c.aerial_size_px, c.aerial_m_per_px)
            if crop is None or crop[0].valid_mask.mean() < 0.9:
                continue
            aerial, centre_exact = crop
            rot = world_from_camera_rotation(c.mount, yaw, pitch_rad=self._pitch_rad)
            pose = np.array([cam_en[0], cam_en[1], alt])
            view = renderer.render(self.camera, pose, rot)
            if view.coverage < 0.5:
                continue
            depth = _plane_depth(self.camera, rot, alt)
            depth[~view.ground_mask] = np.nan
            return TrainingSample(
                sample_id=self.sample_id(index),
                ground_image=view.image,
                camera=self.camera,
                gravity_from_camera=self.gravity_from_camera,
                aerial=aerial,
                camera_en_m=cam_en - centre_exact,
                yaw_enu_rad=math.remainder(yaw, 2.0 * math.pi),
                depth_m=depth,
                depth_is_metric=True,
            )
        raise DatasetError(
            f"could not place a valid synthetic view for sample {index} in "
            f"{c.orthophotos[which]} (too much missing imagery?)"
        )


def _crop_world(
    world: AerialPatch, centre_en: FloatArray, side_px: int, m_per_px: float
) -> tuple[AerialPatch, FloatArray] | None:
    """Resample a north-up square of the world around ``centre_en`` at ``m_per_px``.

    The crop's corner is snapped to the world's pixel lattice, so its centre moves by up to
    half a world pixel; the exact centre is returned.

    Returns:
        The crop (its lat/lon are the world's; only its metric frame matters here) and the
        (east, north) metres of its centre relative to the world centre; None when the crop
        leaves the world.
    """
    scale = m_per_px / world.m_per_px  # world px per output px
    centre_px = world.en_to_pixel(np.asarray(centre_en, dtype=np.float64)[None])[0]
    # Output pixel j's centre is at world edge-based coordinate u0 + (j + 0.5) * scale.
    u0 = round(centre_px[0] + 0.5 - 0.5 * side_px * scale)
    v0 = round(centre_px[1] + 0.5 - 0.5 * side_px * scale)
    ww, wh = world.size_px
    if u0 < 0 or v0 < 0 or u0 + side_px * scale > ww or v0 + side_px * scale > wh:
        return None
    affine = np.array(
        [[scale, 0.0, u0 + 0.5 * scale - 0.5], [0.0, scale, v0 + 0.5 * scale - 0.5]],
        dtype=np.float64,
    )
    source: np.ndarray = world.image
    if scale > 1.0:  # anti-alias before down-sampling
        source = cv2.GaussianBlur(source, (0, 0), 0.5 * scale)
    image = cv2.warpAffine(
        source,
        affine,
        (side_px, side_px),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    )
    valid = (
        cv2.warpAffine(
            world.valid_mask.astype(np.uint8) * 255,
            affine,
            (side_px, side_px),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
        )
        > 127
    )
    east = (u0 + 0.5 * side_px * scale - 0.5 * ww) * world.m_per_px
    north = (0.5 * wh - (v0 + 0.5 * side_px * scale)) * world.m_per_px
    patch = AerialPatch(
        image=np.ascontiguousarray(image),
        m_per_px=m_per_px,
        center_lat_deg=world.center_lat_deg,
        center_lon_deg=world.center_lon_deg,
        valid_mask=valid,
        source_id=f"{world.source_id}:crop",
    )
    return patch, np.array([east, north])


def _plane_depth(
    camera: PinholeCamera, world_from_camera: FloatArray, height_m: float
) -> FloatArray:
    """(H, W) float32 z-depth of the ground plane ``up = -height_m`` seen by a pinhole camera;
    NaN for rays that never reach it."""
    h, w = camera.height_px, camera.width_px
    uu, vv = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = camera.rays(np.stack([uu.ravel(), vv.ravel()], axis=1))
    down = -(rays @ np.asarray(world_from_camera).T)[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        rng_m = np.where(down > 1e-9, height_m / down, np.nan)
    return (rng_m * rays[:, 2]).reshape(h, w).astype(np.float32)
