"""TilePatchSource on synthetic tiles: georeference, Web Mercator scale, masks, zoom choice,
and the provider's bookkeeping (offline, failures remembered, single flight)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import mercantile
import numpy as np
import pyproj
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.errors import NoImageryError
from cvgl_ros.tiles import PatchConfig, TileFetchError, TileNotFoundError
from cvgl_ros.tiles.cache import TileCache
from cvgl_ros.tiles.geo import choose_zoom, web_mercator_ground_m_per_px
from cvgl_ros.tiles.imaging import encode_tile
from cvgl_ros.tiles.patch import TilePatchSource
from cvgl_ros.tiles.provider import TileProvider

_TO_3857 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
_GEOD = pyproj.Geod(ellps="WGS84")


class MarkerSource:
    """In-memory tile source: black tiles with white 3x3 markers at given WGS84 points."""

    is_remote = True
    tile_size_px = 256
    min_zoom = 0
    max_zoom = 22

    def __init__(self, markers: list[tuple[float, float]], zoom: int, missing=()) -> None:
        self.source_id = "markers"
        self.calls = 0
        self.fail: BaseException | None = None
        self.delay_s = 0.0
        self._missing = set(missing)
        self._tiles: dict[tuple[int, int, int], np.ndarray] = {}
        half = mercantile.xy_bounds(0, 0, 0).right
        for lat, lon in markers:
            x, y = _TO_3857.transform(lon, lat)
            gx = (x + half) / (2 * half) * 256 * (1 << zoom)
            gy = (half - y) / (2 * half) * 256 * (1 << zoom)
            px, py = int(gx), int(gy)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    qx, qy = px + dx, py + dy
                    key = (zoom, qx // 256, qy // 256)
                    tile = self._tiles.setdefault(key, np.zeros((256, 256, 3), np.uint8))
                    tile[qy % 256, qx % 256] = 255

    def fetch(self, z: int, x: int, y: int) -> bytes:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        if (z, x, y) in self._missing:
            raise TileNotFoundError(f"{z}/{x}/{y}")
        return encode_tile(self._tiles.get((z, x, y), np.zeros((256, 256, 3), np.uint8)))

    def stats(self) -> dict[str, int]:
        return {"calls": self.calls}

    def close(self) -> None:
        pass


def _marker_centroid(img: np.ndarray) -> np.ndarray:
    w = img[:, :, 0].astype(float)
    vv, uu = np.mgrid[0 : w.shape[0], 0 : w.shape[1]]
    return np.array([(uu * w).sum(), (vv * w).sum()]) / w.sum()


@pytest.mark.parametrize("lat", [0.0, 38.95, 60.4, -33.9, 80.0])
def test_marker_at_fix_lands_at_patch_centre(lat: float, tmp_path: Path) -> None:
    lon = 22.46
    zoom = 18
    src = MarkerSource([(lat, lon)], zoom)
    provider = TileProvider(src, TileCache(tmp_path / "c.mbtiles"))
    mpp = web_mercator_ground_m_per_px(lat, zoom)  # same scale as the tiles: no resampling
    patches = TilePatchSource(provider, PatchConfig(patch_size_px=64, patch_m_per_px=mpp))
    p = patches.patch_at(lat, lon)
    assert patches.stats()["last_zoom"] == zoom
    centre = p.en_to_pixel(np.zeros((1, 2)))[0]
    assert np.linalg.norm(_marker_centroid(p.image) - centre) < 0.75
    patches.close()


@settings(max_examples=15, deadline=None)
@given(
    lat=st.floats(-70.0, 70.0),
    bearing_deg=st.floats(0.0, 360.0),
    dist_m=st.floats(10.0, 40.0),
)
def test_metric_scale_at_any_latitude(lat: float, bearing_deg: float, dist_m: float) -> None:
    """A marker dist_m away at a bearing appears at (east, north) = dist (sin b, cos b)."""
    lon = 10.0
    lon2, lat2, _ = _GEOD.fwd(lon, lat, bearing_deg, dist_m)
    zoom = choose_zoom(lat, 0.25, 256, 0, 22, 1.0)
    src = MarkerSource([(lat2, lon2)], zoom)
    patches = TilePatchSource(
        TileProvider(src, None), PatchConfig(patch_size_px=192, patch_m_per_px=0.5, zoom=zoom)
    )
    p = patches.patch_at(lat, lon)
    en = p.pixel_to_en(_marker_centroid(p.image)[None])[0]
    b = np.radians(bearing_deg)
    expect = dist_m * np.array([np.sin(b), np.cos(b)])
    assert np.linalg.norm(en - expect) < 0.5  # within one patch pixel (0.5 m)


def test_missing_tiles_are_masked_and_counted() -> None:
    lat, lon, zoom = 47.0, 8.0, 17
    t = mercantile.tile(lon, lat, zoom)
    src = MarkerSource([], zoom, missing={(zoom, t.x, t.y)})
    patches = TilePatchSource(
        TileProvider(src, None), PatchConfig(patch_size_px=256, patch_m_per_px=1.0, zoom=zoom)
    )
    p = patches.patch_at(lat, lon)
    assert not p.valid_mask[128, 128] and 0.0 < p.valid_mask.mean() < 1.0
    st_ = patches.stats()
    assert st_["missing_tiles"] == 1 and st_["not_found"] == 1
    strict = TilePatchSource(
        TileProvider(src, None),
        PatchConfig(patch_size_px=256, patch_m_per_px=1.0, zoom=zoom, min_valid_fraction=0.99),
    )
    with pytest.raises(NoImageryError):
        strict.patch_at(lat, lon)


def test_zoom_choice_follows_resolution() -> None:
    for lat in (0.0, 45.0, 70.0):
        for mpp in (0.1, 0.3, 1.0, 5.0):
            z = choose_zoom(lat, mpp, 256, 0, 22, 1.0)
            assert web_mercator_ground_m_per_px(lat, z) <= mpp + 1e-9
            assert web_mercator_ground_m_per_px(lat, z - 1) > mpp
    assert choose_zoom(45.0, 0.01, 256, 0, 19, 1.0) == 19  # clamped to the source


def test_offline_provider_never_calls_the_source(tmp_path: Path) -> None:
    src = MarkerSource([], 18)
    provider = TileProvider(src, TileCache(tmp_path / "c.mbtiles"), offline=True)
    assert provider.get_tile(18, 1, 1) is None and provider.ensure_cached(18, 1, 1) == "offline"
    assert src.calls == 0 and provider.stats()["unavailable_offline"] == 2
    provider.close()


def test_failures_are_remembered_then_retried(tmp_path: Path) -> None:
    src = MarkerSource([], 18)
    src.fail = TileFetchError("boom", status_code=503)
    provider = TileProvider(src, TileCache(tmp_path / "c.mbtiles"), failure_ttl_s=0.2)
    assert provider.get_tile(18, 5, 5) is None
    assert provider.get_tile(18, 5, 5) is None  # remembered: no second call
    assert src.calls == 1 and provider.stats()["skipped_recent_failure"] == 1
    src.fail = None
    time.sleep(0.25)
    assert provider.get_tile(18, 5, 5) is not None and src.calls == 2
    assert provider.ensure_cached(18, 5, 5) == "cached"
    provider.close()


def test_concurrent_requests_share_one_fetch(tmp_path: Path) -> None:
    src = MarkerSource([], 18)
    src.delay_s = 0.2
    provider = TileProvider(src, TileCache(tmp_path / "c.mbtiles"))
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(provider.get_tile(18, 3, 3)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert src.calls == 1 and all(r is not None for r in results)
    provider.close()


def test_slow_tiles_are_deferred_not_waited_for(tmp_path: Path) -> None:
    """patch_at waits at most fetch_budget_s; late tiles land in the cache for the next call."""
    lat, lon, zoom = 47.0, 8.0, 18
    src = MarkerSource([(lat, lon)], zoom)
    src.delay_s = 0.4
    provider = TileProvider(src, TileCache(tmp_path / "c.mbtiles"))
    patches = TilePatchSource(
        provider, PatchConfig(patch_size_px=64, patch_m_per_px=0.5, zoom=zoom, fetch_budget_s=0.05)
    )
    with pytest.raises(NoImageryError):
        patches.patch_at(lat, lon)
    assert patches.stats()["fetch_deferred"] >= 1
    calls = src.calls
    deadline = time.monotonic() + 10.0
    while provider.cache is not None and provider.cache.tile_count() < calls:
        assert time.monotonic() < deadline, "deferred downloads never reached the cache"
        time.sleep(0.05)
    p = patches.patch_at(lat, lon)  # now entirely from memory/cache
    assert p.valid_mask.all() and src.calls == calls
    patches.close()


def test_native_resolution_is_the_finest_zoom_at_the_latitude() -> None:
    src = MarkerSource([], 18)
    src.max_zoom = 19
    patches = TilePatchSource(TileProvider(src, None), PatchConfig())
    for lat in (0.0, 47.0, 70.0):
        assert patches.native_m_per_px_at(lat, 8.0) == pytest.approx(
            web_mercator_ground_m_per_px(lat, 19)
        )
    forced = TilePatchSource(TileProvider(src, None), PatchConfig(zoom=16))
    assert forced.native_m_per_px_at(47.0, 8.0) == pytest.approx(
        web_mercator_ground_m_per_px(47.0, 16)
    )
    with pytest.raises(NoImageryError):
        patches.native_m_per_px_at(89.0, 8.0)  # beyond Web Mercator
