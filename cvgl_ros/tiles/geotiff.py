"""Patches from a local orthophoto (GeoTIFF or anything GDAL reads) in any projected CRS.

Drone orthomosaics (ODM, Pix4D), national orthophotos and satellite scenes come in a projected
CRS (UTM, a national grid), often 16-bit or with an alpha band. :class:`GeoTiffPatchSource`
reads only the window under the requested patch (decimated through GDAL's average resampling
when the source is much finer than the patch), maps every patch pixel to the source with pyproj
(see :mod:`cvgl_ros.tiles.geo` for the patch frame) and resamples with OpenCV. Large patches
(4096 px and more, used as the "world" by the synthetic renderer) work the same way.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window

from cvgl_ros.core.errors import NoImageryError
from cvgl_ros.core.types import AerialPatch, FloatArray
from cvgl_ros.tiles.config import PatchConfig
from cvgl_ros.tiles.geo import (
    centre_step_px,
    check_lat_lon,
    check_valid_fraction,
    ground_m_per_px_at,
    lonlat_transformer,
    source_pixel_maps,
)
from cvgl_ros.tiles.imaging import split_rgba

log = logging.getLogger(__name__)

# Decimate the read when one patch pixel covers more than this many source pixels.
_DECIMATE_ABOVE = 1.5
# Longest side of the overview read used to estimate the contrast stretch.
_STRETCH_SAMPLE_PX = 1024


class GeoTiffPatchSource:
    """North-up metric patches from a georeferenced raster.

    Band choice: red/green/blue by colour interpretation when the file declares them, else
    bands 1, 2, 3 (e.g. NAIP RGB+NIR), else band 1 as grey. Validity: GDAL's dataset mask
    (alpha band, nodata value or internal mask) and the raster footprint. Non-8-bit data
    (16-bit panchromatic, float reflectance) is stretched to 8 bit between per-band
    percentiles estimated once from an overview of the whole raster, so that every patch of
    one file has the same radiometry.

    Thread-safe: reads are serialised on the open dataset.
    """

    def __init__(
        self,
        path: str | Path,
        patch_size_px: int = 512,
        patch_m_per_px: float = 0.5,
        *,
        min_valid_fraction: float = 0.0,
        bands: tuple[int, int, int] | None = None,
        stretch_percentiles: tuple[float, float] = (2.0, 98.0),
        source_id: str | None = None,
    ) -> None:
        """Open the raster.

        Args:
            path: GeoTIFF (or any GDAL raster) with a projected or geographic CRS.
            patch_size_px: edge of the square patch, pixels.
            patch_m_per_px: patch resolution, metres per pixel.
            min_valid_fraction: see :class:`~cvgl_ros.tiles.config.PatchConfig`.
            bands: 1-based (red, green, blue) band indexes; ``None`` chooses automatically.
            stretch_percentiles: (low, high) percentiles mapped to 0 and 255 for non-8-bit data.
            source_id: id reported in each patch; defaults to the file name.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the raster has no CRS/georeference, or bad arguments.
        """
        self.config = PatchConfig(
            patch_size_px=patch_size_px,
            patch_m_per_px=patch_m_per_px,
            min_valid_fraction=min_valid_fraction,
        )
        lo_pct, hi_pct = stretch_percentiles
        if not (0.0 <= lo_pct < hi_pct <= 100.0):
            raise ValueError(
                f"stretch_percentiles must be 0 <= low < high <= 100, got {stretch_percentiles}"
            )
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"orthophoto not found: {self.path}")
        self._ds = rasterio.open(self.path)
        try:
            if self._ds.crs is None:
                raise ValueError(f"{self.path} has no CRS; cannot georeference it")
            if self._ds.transform.is_identity:
                raise ValueError(f"{self.path} has no geotransform; cannot georeference it")
            self.source_id = source_id or self.path.name
            self._bands = self._choose_bands(bands)
            self._inverse = ~self._ds.transform
            self._to_src = lonlat_transformer(self._ds.crs.to_wkt())
            self._lo, self._scale = self._stretch(lo_pct, hi_pct)
        except Exception:
            self._ds.close()
            raise
        self._lock = threading.Lock()
        self._counters: dict[str, float] = {
            "patches": 0,
            "no_imagery": 0,
            "source_px_read": 0,
            "last_patch_ms": 0.0,
        }

    # -- set-up -------------------------------------------------------------------------------

    def _choose_bands(self, bands: tuple[int, int, int] | None) -> tuple[int, int, int]:
        count = self._ds.count
        if bands is not None:
            if len(bands) != 3 or not all(1 <= int(b) <= count for b in bands):
                raise ValueError(f"bands must be three indexes in [1, {count}], got {bands}")
            return (int(bands[0]), int(bands[1]), int(bands[2]))
        interp = list(self._ds.colorinterp)
        want = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        if all(c in interp for c in want):
            r, g, b = (interp.index(c) + 1 for c in want)
            return (r, g, b)
        non_alpha = [i + 1 for i, c in enumerate(interp) if c != ColorInterp.alpha]
        if len(non_alpha) >= 3:
            return (non_alpha[0], non_alpha[1], non_alpha[2])
        first = non_alpha[0] if non_alpha else 1
        return (first, first, first)

    def _stretch(self, lo_pct: float, hi_pct: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-band offset and scale to 8 bit; identity for uint8 data."""
        unique = sorted(set(self._bands))
        if all(self._ds.dtypes[b - 1] == "uint8" for b in unique):
            return np.zeros(3, np.float32), np.ones(3, np.float32)
        h, w = self._ds.height, self._ds.width
        f = max(1.0, max(h, w) / _STRETCH_SAMPLE_PX)
        shape = (max(1, int(h / f)), max(1, int(w / f)))
        data = self._ds.read(
            unique, out_shape=(len(unique), *shape), resampling=Resampling.nearest
        )
        mask = self._ds.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
        lo_of: dict[int, float] = {}
        scale_of: dict[int, float] = {}
        for k, b in enumerate(unique):
            values = data[k][mask & np.isfinite(data[k])]
            if values.size == 0:
                lo, hi = 0.0, 1.0
            else:
                lo, hi = (float(v) for v in np.percentile(values, [lo_pct, hi_pct]))
            lo_of[b] = lo
            scale_of[b] = 255.0 / (hi - lo) if hi > lo else 1.0
        log.debug(
            "stretch of %s: %s", self.path.name, {b: (lo_of[b], scale_of[b]) for b in unique}
        )
        return (
            np.array([lo_of[b] for b in self._bands], np.float32),
            np.array([scale_of[b] for b in self._bands], np.float32),
        )

    # -- queries ------------------------------------------------------------------------------

    @property
    def crs_wkt(self) -> str:
        """WKT of the raster's CRS."""
        return str(self._ds.crs.to_wkt())

    @property
    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) WGS84 degrees of the raster footprint."""
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(self._ds.crs, "EPSG:4326", *self._ds.bounds, densify_pts=21)
        return (float(w), float(s), float(e), float(n))

    @property
    def native_m_per_px(self) -> float:
        """Mean pixel size of the raster in its CRS units (metres for projected CRSs)."""
        xres, yres = self._ds.res
        return float(math.sqrt(abs(xres * yres)))

    def native_m_per_px_at(self, lat_deg: float, lon_deg: float) -> float:
        """Ground size of one raster pixel at a WGS84 point, metres (any CRS).

        Raises:
            cvgl_ros.core.errors.InvalidInputError: NaN or out-of-range point.
        """
        return ground_m_per_px_at(self.lonlat_to_pixel, lat_deg, lon_deg)

    def lonlat_to_pixel(
        self, lon_deg: FloatArray, lat_deg: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """WGS84 -> continuous raster pixel coordinates (col, row); pixel centres at +0.5."""
        x, y = self._to_src.transform(
            np.asarray(lon_deg, np.float64), np.asarray(lat_deg, np.float64)
        )
        a = self._inverse
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        return a.a * x + a.b * y + a.c, a.d * x + a.e * y + a.f

    def stats(self) -> dict[str, int | float]:
        """Counters: patches built, no-imagery failures, source pixels read, last build time."""
        return dict(self._counters)

    def close(self) -> None:
        """Close the raster."""
        self._ds.close()

    def __enter__(self) -> GeoTiffPatchSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the patch ----------------------------------------------------------------------------

    def patch_at(
        self,
        lat_deg: float,
        lon_deg: float,
        patch_size_px: int | None = None,
        patch_m_per_px: float | None = None,
    ) -> AerialPatch:
        """The north-up patch centred on a WGS84 point.

        Args:
            lat_deg: centre latitude, degrees.
            lon_deg: centre longitude, degrees.
            patch_size_px: override of the configured patch edge, pixels.
            patch_m_per_px: override of the configured resolution, metres per pixel.

        Returns:
            The patch; ``valid_mask`` is False outside the raster and where it has no data.

        Raises:
            cvgl_ros.core.errors.InvalidInputError: NaN or out-of-range fix.
            cvgl_ros.core.errors.NoImageryError: the patch does not overlap valid imagery (or
                less than ``min_valid_fraction`` of it is valid).
        """
        t0 = time.perf_counter()
        lat, lon = check_lat_lon(lat_deg, lon_deg)
        size, mpp = self.config.resolve_overrides(patch_size_px, patch_m_per_px)
        try:
            image, valid = self._render(lat, lon, size, mpp)
            check_valid_fraction(valid, self.config.min_valid_fraction, self.source_id, lat, lon)
        except NoImageryError:
            self._counters["no_imagery"] += 1
            raise
        self._counters["patches"] += 1
        self._counters["last_patch_ms"] = 1e3 * (time.perf_counter() - t0)
        return AerialPatch(
            image=image,
            m_per_px=mpp,
            center_lat_deg=lat,
            center_lon_deg=lon,
            valid_mask=valid,
            source_id=self.source_id,
        )

    def _render(
        self, lat: float, lon: float, size: int, mpp: float
    ) -> tuple[np.ndarray, np.ndarray]:
        def to_src_px(lon_a: FloatArray, lat_a: FloatArray) -> tuple[FloatArray, FloatArray]:
            col, row = self.lonlat_to_pixel(lon_a, lat_a)
            return col - 0.5, row - 0.5  # cv2: integer coordinates are pixel centres

        try:
            map_x, map_y, off_x, off_y = source_pixel_maps(lat, lon, size, mpp, to_src_px)
        except NoImageryError as exc:
            raise NoImageryError(
                f"{self.source_id}: ({lat:.6f}, {lon:.6f}) is outside the raster's CRS domain"
            ) from exc
        x0 = off_x + math.floor(float(map_x.min())) - 2
        y0 = off_y + math.floor(float(map_y.min())) - 2
        x1 = off_x + math.ceil(float(map_x.max())) + 3
        y1 = off_y + math.ceil(float(map_y.max())) + 3
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x1, self._ds.width), min(y1, self._ds.height)
        if cx1 <= cx0 or cy1 <= cy0:
            raise NoImageryError(
                f"{self.source_id}: the patch at ({lat:.6f}, {lon:.6f}) lies outside the raster"
            )
        factor = centre_step_px(map_x, map_y)  # source pixels per patch pixel
        win = Window(cx0, cy0, cx1 - cx0, cy1 - cy0)
        if factor > _DECIMATE_ABOVE:
            dec = math.floor(factor)
            out_h = max(1, math.ceil(win.height / dec))
            out_w = max(1, math.ceil(win.width / dec))
        else:
            dec = 1
            out_h, out_w = int(win.height), int(win.width)
        with self._lock:
            unique = sorted(set(self._bands))
            data = self._ds.read(
                unique,
                window=win,
                out_shape=(len(unique), out_h, out_w),
                resampling=Resampling.average,
            )
            mask = self._ds.dataset_mask(
                window=win, out_shape=(out_h, out_w), resampling=Resampling.nearest
            )
        self._counters["source_px_read"] += int(win.width * win.height)
        # Exact scale factors of the (possibly decimated) read, per axis.
        sx = win.width / out_w
        sy = win.height / out_h
        # In place (4096 px patches carry 64 MB maps): window pixel = (map + off + 0.5) / s - 0.5.
        mx, my = map_x, map_y
        for m, shift, scale in ((mx, off_x - cx0, sx), (my, off_y - cy0, sy)):
            if scale == 1.0:
                m += np.float32(shift)
            else:
                m += np.float32(shift + 0.5)
                m /= np.float32(scale)
                m -= np.float32(0.5)
        planes = {b: self._to_uint8(data[k], b) for k, b in enumerate(unique)}
        # RGB + validity alpha resampled in one pass; a patch pixel is valid only when every
        # source pixel it interpolates is valid (alpha exactly 255).
        alpha = np.where(mask > 0, np.uint8(255), np.uint8(0))
        rgba = cv2.merge([*(planes[b] for b in self._bands), alpha])
        return split_rgba(
            cv2.remap(rgba, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        )

    def _to_uint8(self, plane: np.ndarray, band: int) -> np.ndarray:
        """(h, w) raster values of one band -> (h, w) uint8 with the file's stretch."""
        k = self._bands.index(band)
        lo, scale = float(self._lo[k]), float(self._scale[k])
        if plane.dtype == np.uint8 and lo == 0.0 and scale == 1.0:
            return np.ascontiguousarray(plane)
        f = plane.astype(np.float32)
        f -= np.float32(lo)
        f *= np.float32(scale)
        if np.issubdtype(plane.dtype, np.floating):
            np.nan_to_num(f, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        np.clip(f, 0.0, 255.0, out=f)
        return f.astype(np.uint8)
