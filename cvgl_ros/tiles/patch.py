"""North-up metric patches mosaicked from Web Mercator XYZ tiles.

Web Mercator stretches the ground by 1 / cos(latitude) (about 1.3x at 40 degrees): a tile pixel
is *not* a fixed ground distance. Each patch pixel is therefore placed exactly: patch pixel ->
(east, north) -> WGS84 (ellipsoidal azimuthal equidistant, :mod:`.geo`) -> EPSG:3857 (pyproj)
-> global pixel of the zoom level -> the mosaic of the tiles it needs, then resampled with
OpenCV (area-averaged first when the tiles are finer than the patch). The zoom is the coarsest
one whose ground resolution at the fix's latitude reaches ``patch_m_per_px``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import cv2
import mercantile
import numpy as np

from cvgl_ros.core.errors import NoImageryError
from cvgl_ros.core.types import AerialPatch, FloatArray
from cvgl_ros.tiles.config import PatchConfig
from cvgl_ros.tiles.geo import (
    centre_step_px,
    check_in_web_mercator,
    check_lat_lon,
    check_valid_fraction,
    choose_zoom,
    lonlat_transformer,
    source_pixel_maps,
    web_mercator_ground_m_per_px,
)
from cvgl_ros.tiles.imaging import split_rgba
from cvgl_ros.tiles.provider import TileProvider

log = logging.getLogger(__name__)

# Half the Web Mercator world width, metres (mercantile's constant via the z0 tile bounds).
_WORLD_HALF_M = mercantile.xy_bounds(0, 0, 0).right
# Area-average the mosaic first when one patch pixel spans more than this many tile pixels.
_PREDOWNSAMPLE_ABOVE = 1.25


class TilePatchSource:
    """``PatchSource`` over a :class:`TileProvider` (XYZ/WMS through the cache, or MBTiles).

    Thread-safe (the provider is); ``patch_at`` waits on the network only for tiles missing
    from the cache, only when ``PatchConfig.fetch_missing`` is set and the provider is online,
    and at most ``PatchConfig.fetch_budget_s`` (missing tiles are fetched in parallel; late
    ones are masked now and cached for the next patch). With a
    :class:`~cvgl_ros.tiles.prefetch.Prefetcher` attached, every ``patch_at`` also tells it
    where the vehicle is (non-blocking).
    """

    def __init__(
        self, provider: TileProvider, config: PatchConfig | None = None, prefetcher: Any = None
    ) -> None:
        self.provider = provider
        self.config = config or PatchConfig()
        self.prefetcher = prefetcher
        self.source_id = provider.source_id
        self._to_3857 = lonlat_transformer("EPSG:3857")
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._counters: dict[str, float] = {
            "patches": 0,
            "no_imagery": 0,
            "missing_tiles": 0,
            "fetch_deferred": 0,
            "last_patch_ms": 0.0,
            "last_zoom": -1,
        }

    def native_m_per_px_at(self, lat_deg: float, lon_deg: float) -> float:
        """Ground resolution of the finest zoom level at a WGS84 point, metres per pixel.

        Raises:
            cvgl_ros.core.errors.InvalidInputError: NaN or out-of-range point.
            cvgl_ros.tiles.errors.OutsideTileGridError: beyond Web Mercator's latitudes.
        """
        lat, _ = check_lat_lon(lat_deg, lon_deg)
        check_in_web_mercator(lat)
        zoom = self.config.zoom if self.config.zoom is not None else self.provider.max_zoom
        zoom = min(max(zoom, self.provider.min_zoom), self.provider.max_zoom)
        return web_mercator_ground_m_per_px(lat, zoom, self.provider.tile_size_px)

    def zoom_for(self, lat_deg: float, m_per_px: float | None = None) -> int:
        """The zoom level used for a patch at this latitude."""
        if self.config.zoom is not None:
            return min(max(self.config.zoom, self.provider.min_zoom), self.provider.max_zoom)
        return choose_zoom(
            lat_deg,
            m_per_px or self.config.patch_m_per_px,
            self.provider.tile_size_px,
            self.provider.min_zoom,
            self.provider.max_zoom,
            self.config.zoom_coarse_tolerance,
        )

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
            The patch; ``valid_mask`` is False where tiles are missing or transparent.

        Raises:
            cvgl_ros.core.errors.InvalidInputError: NaN or out-of-range fix.
            cvgl_ros.tiles.errors.OutsideTileGridError: |latitude| beyond Web Mercator (a
                ``NoImageryError``).
            cvgl_ros.core.errors.NoImageryError: no (or too little) imagery around the fix.
        """
        t0 = time.perf_counter()
        lat, lon = check_lat_lon(lat_deg, lon_deg)
        try:
            check_in_web_mercator(lat)
        except NoImageryError:
            self._counters["no_imagery"] += 1
            raise
        size, mpp = self.config.resolve_overrides(patch_size_px, patch_m_per_px)
        if self.prefetcher is not None:
            self.prefetcher.update_fix(lat, lon, patch_m_per_px=mpp)
        zoom = self.zoom_for(lat, mpp)
        image, valid, missing = self._render(lat, lon, size, mpp, zoom)
        self._counters["missing_tiles"] += missing
        try:
            check_valid_fraction(
                valid,
                self.config.min_valid_fraction,
                self.source_id,
                lat,
                lon,
                f" at zoom {zoom} ({missing} tiles missing)",
            )
        except NoImageryError:
            self._counters["no_imagery"] += 1
            raise
        self._counters["patches"] += 1
        self._counters["last_zoom"] = zoom
        self._counters["last_patch_ms"] = 1e3 * (time.perf_counter() - t0)
        return AerialPatch(
            image=image,
            m_per_px=mpp,
            center_lat_deg=lat,
            center_lon_deg=lon,
            valid_mask=valid,
            source_id=self.source_id,
        )

    def tiles_for_patch(
        self, lat_deg: float, lon_deg: float, zoom: int | None = None
    ) -> list[tuple[int, int, int]]:
        """The (z, x, y) tiles a patch at this point needs (x wrapped across the antimeridian)."""
        lat, lon = check_lat_lon(lat_deg, lon_deg)
        check_in_web_mercator(lat)
        z = self.zoom_for(lat) if zoom is None else zoom
        size, mpp = self.config.patch_size_px, self.config.patch_m_per_px
        map_x, map_y, off_x, off_y = self._global_maps(lat, lon, size, mpp, z)
        tx0, ty0, tx1, ty1 = self._tile_range(map_x, map_y, off_x, off_y, z)
        n = 1 << z
        return [(z, tx % n, ty) for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]

    # -- internals ------------------------------------------------------------------------------

    def _global_maps(
        self, lat: float, lon: float, size: int, mpp: float, zoom: int
    ) -> tuple[np.ndarray, np.ndarray, int, int]:
        ts = self.provider.tile_size_px
        px_per_m = ts * (1 << zoom) / (2.0 * _WORLD_HALF_M)

        def to_global_px(lon_a: FloatArray, lat_a: FloatArray) -> tuple[FloatArray, FloatArray]:
            # Unwrap longitudes across the antimeridian relative to the centre.
            lon_u = np.where(lon_a - lon > 180.0, lon_a - 360.0, lon_a)
            lon_u = np.where(lon_u - lon < -180.0, lon_u + 360.0, lon_u)
            x, y = self._to_3857.transform(lon_u, lat_a)
            gx = (np.asarray(x, np.float64) + _WORLD_HALF_M) * px_per_m
            gy = (_WORLD_HALF_M - np.asarray(y, np.float64)) * px_per_m
            return gx - 0.5, gy - 0.5  # cv2: integer coordinates are pixel centres

        return source_pixel_maps(lat, lon, size, mpp, to_global_px)

    def _tile_range(
        self, map_x: np.ndarray, map_y: np.ndarray, off_x: int, off_y: int, zoom: int
    ) -> tuple[int, int, int, int]:
        ts = self.provider.tile_size_px
        n = 1 << zoom
        gx0 = off_x + float(map_x.min()) - 1.0
        gx1 = off_x + float(map_x.max()) + 2.0
        gy0 = off_y + float(map_y.min()) - 1.0
        gy1 = off_y + float(map_y.max()) + 2.0
        tx0, tx1 = math.floor(gx0 / ts), math.floor(gx1 / ts)
        ty0, ty1 = max(0, math.floor(gy0 / ts)), min(n - 1, math.floor(gy1 / ts))
        return tx0, ty0, tx1, ty1

    def _render(
        self, lat: float, lon: float, size: int, mpp: float, zoom: int
    ) -> tuple[np.ndarray, np.ndarray, int]:
        ts = self.provider.tile_size_px
        n = 1 << zoom
        map_x, map_y, off_x, off_y = self._global_maps(lat, lon, size, mpp, zoom)
        tx0, ty0, tx1, ty1 = self._tile_range(map_x, map_y, off_x, off_y, zoom)
        ntx, nty = tx1 - tx0 + 1, ty1 - ty0 + 1
        # RGB + validity as the alpha channel: one remap resamples both.
        mosaic = np.zeros((nty * ts, ntx * ts, 4), np.uint8)
        absent: list[tuple[int, int]] = []
        for j in range(nty):
            for i in range(ntx):
                tile = self.provider.get_tile(zoom, (tx0 + i) % n, ty0 + j, fetch=False)
                if tile is None:
                    absent.append((i, j))
                else:
                    mosaic[j * ts : (j + 1) * ts, i * ts : (i + 1) * ts] = tile.rgba
        missing = len(absent)
        if absent and self.config.fetch_missing and self.provider.can_fetch():
            # Fetch in parallel, wait at most the budget; stragglers finish in the background
            # and are in the cache for the next patch.
            pool = self._fetch_pool()
            futures = {
                pool.submit(self.provider.fetch_tile, zoom, (tx0 + i) % n, ty0 + j): (i, j)
                for i, j in absent
            }
            done, not_done = wait(futures, timeout=self.config.fetch_budget_s)
            self._counters["fetch_deferred"] += len(not_done)
            for fut in done:
                tile = fut.result()
                if tile is not None:
                    i, j = futures[fut]
                    mosaic[j * ts : (j + 1) * ts, i * ts : (i + 1) * ts] = tile.rgba
                    missing -= 1
        # Patch pixel -> mosaic pixel (float32 maps relative to the mosaic origin).
        mx = map_x
        mx += np.float32(off_x - tx0 * ts)
        my = map_y
        my += np.float32(off_y - ty0 * ts)
        step = centre_step_px(mx, my)
        if step > _PREDOWNSAMPLE_ABOVE:
            # Tiles finer than the patch: area-average first so bilinear sampling cannot alias.
            h, w = mosaic.shape[:2]
            new_w, new_h = max(1, round(w / step)), max(1, round(h / step))
            mosaic = np.asarray(
                cv2.resize(mosaic, (new_w, new_h), interpolation=cv2.INTER_AREA), dtype=np.uint8
            )
            sx, sy = w / new_w, h / new_h
            mx = (mx + np.float32(0.5)) / np.float32(sx) - np.float32(0.5)
            my = (my + np.float32(0.5)) / np.float32(sy) - np.float32(0.5)
        out = cv2.remap(mosaic, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        # Valid only where every tile pixel contributing to the patch pixel is valid.
        image, valid = split_rgba(out)
        return image, valid, missing

    def _fetch_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                workers = int(getattr(getattr(self.provider.source, "config", None),
                                      "max_concurrent_requests", 4))  # fmt: skip
                self._pool = ThreadPoolExecutor(
                    max_workers=max(1, min(workers, 8)), thread_name_prefix="tile-fetch"
                )
            return self._pool

    def stats(self) -> dict[str, int | float]:
        """Patch counters plus the provider's (hits, misses, fetch errors, bytes, ...)."""
        out: dict[str, int | float] = dict(self._counters)
        out.update(self.provider.stats())
        if self.prefetcher is not None:
            out.update({f"prefetch.{k}": v for k, v in self.prefetcher.stats().items()})
        return out

    def close(self) -> None:
        """Stop the prefetcher, close the source and the cache."""
        if self.prefetcher is not None:
            self.prefetcher.close()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self.provider.close()

    def __enter__(self) -> TilePatchSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
