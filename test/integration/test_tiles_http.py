"""Tile cache against a real HTTP tile server on 127.0.0.1 serving real orthophotos.

The server (``tiles_test_server.py``) cuts XYZ tiles and WMS images from GeoTIFFs in
``../shared/data`` with GDAL; the tests check the patch georeference against the GeoTIFF's own
transform, the fault handling (HTTP errors, 429, timeouts, truncated and HTML bodies, an
unreachable server, a locked or full database) and offline mode.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pyproj
import pytest
import rasterio
from tiles_test_server import Fault, OrthoTiler, TileServer

from cvgl_ros.core.errors import InvalidInputError, NoImageryError
from cvgl_ros.core.types import AerialPatch
from cvgl_ros.tiles import (
    CacheConfig,
    CacheFullError,
    CacheLockedError,
    GeoTiffPatchSource,
    OutsideTileGridError,
    PatchConfig,
    TileSourceConfig,
    build_patch_source,
)
from cvgl_ros.tiles.cache import TileCache
from cvgl_ros.tiles.patch import TilePatchSource

pytestmark = [
    pytest.mark.data,
    # rasterio's own from_bounds uses the Affine `*` operator that affine 3 deprecates.
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]

ATLANTA = "spacenet_solaris_samples/sample_geotiff.tif"  # 0.5 m/px, UTM 16N, uint16 pan
BALI = "riotiler_fixture_orthos/pix4d_bali_ricefields_0p35m.tif"  # 0.35 m/px, UTM 50S, RGBA
NAIP = "naip_opengeos_5m_multitemporal/m_4709963_se_14_1_20200831.tif"  # 5 m/px, UTM 14N


@pytest.fixture(scope="module")
def atlanta(shared_data: Path) -> Iterator[TileServer]:
    with TileServer(OrthoTiler(shared_data / ATLANTA)) as server:
        yield server


@pytest.fixture
def server(atlanta: TileServer) -> Iterator[TileServer]:
    atlanta.clear_faults()
    yield atlanta
    atlanta.clear_faults()


def _pixel_lonlat(tif: Path, col: float, row: float) -> tuple[float, float]:
    """WGS84 of a continuous GeoTIFF pixel coordinate, via the file's own transform."""
    with rasterio.open(tif) as ds:
        x, y = ds.transform @ (col, row)
        t = pyproj.Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
    lon, lat = t.transform(x, y)
    return float(lon), float(lat)


def _reference(tif: Path, tiler: OrthoTiler, patch: AerialPatch) -> np.ndarray:
    """The patch re-rendered straight from the GeoTIFF: every patch pixel -> ENU (core) ->
    WGS84 (core LocalEnu) -> the GeoTIFF CRS (pyproj) -> GeoTIFF pixel (its transform)."""
    from cvgl_ros.core.geodesy import LocalEnu

    w, h = patch.size_px
    uu, vv = np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float))
    en = patch.pixel_to_en(np.stack([uu.ravel(), vv.ravel()], 1))
    enu = LocalEnu(patch.center_lat_deg, patch.center_lon_deg)
    lat, lon = enu.to_wgs84(en[:, 0], en[:, 1])
    with rasterio.open(tif) as ds:
        t = pyproj.Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)
        x, y = t.transform(np.asarray(lon), np.asarray(lat))
        inv = ~ds.transform
    col = inv.a * x + inv.b * y + inv.c - 0.5
    row = inv.d * x + inv.e * y + inv.f - 0.5
    grey = cv2.cvtColor(np.ascontiguousarray(np.moveaxis(tiler.rgb, 0, -1)), cv2.COLOR_RGB2GRAY)
    return cv2.remap(
        grey,
        col.reshape(h, w).astype(np.float32),
        row.reshape(h, w).astype(np.float32),
        cv2.INTER_LINEAR,
    )


def _shift_px(patch: AerialPatch, ref: np.ndarray) -> tuple[float, float, float]:
    grey = cv2.cvtColor(patch.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    ref_f = ref.astype(np.float32)
    m = patch.valid_mask & (ref > 0)
    grey[~m] = grey[m].mean()
    ref_f[~m] = ref_f[m].mean()
    window = cv2.createHanningWindow(grey.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(grey, ref_f, window)
    corr = float(np.corrcoef(grey[m], ref_f[m])[0, 1])
    return float(dx), float(dy), corr


@pytest.mark.parametrize(
    "rel,fraction,size_px,m_per_px",
    [
        (ATLANTA, (0.37, 0.61), 256, 0.5),
        (BALI, (0.55, 0.45), 256, 0.35),
        (NAIP, (0.3, 0.6), 128, 6.0),
    ],
    ids=["atlanta-utm16n", "bali-utm50s-rgba", "naip-utm14n-6m"],
)
def test_patch_georeference_matches_geotiff_transform(
    shared_data: Path, tmp_path: Path, rel: str, fraction: tuple[float, float], size_px: int,
    m_per_px: float,
) -> None:  # fmt: skip
    """A GeoTIFF pixel chosen as the fix lands at the patch centre within 1 px (XYZ and WMS).

    (NAIP is checked at 6 m/px: exactly at its native 5 m, phase correlation between
    differently low-passed samplings of the same grid shows a 0.4 px aliasing artefact that
    disappears at 4.9 and 5.1 m/px.)
    """
    tif = shared_data / rel
    tiler = OrthoTiler(tif)
    with rasterio.open(tif) as ds:
        col, row = fraction[0] * ds.width, fraction[1] * ds.height
    lon, lat = _pixel_lonlat(tif, col, row)
    patch_cfg = PatchConfig(patch_size_px=size_px, patch_m_per_px=m_per_px)
    with TileServer(tiler) as server:
        xyz = build_patch_source(server.template(), tmp_path / "c.mbtiles", patch_cfg)
        wms = build_patch_source(
            TileSourceConfig(source=server.wms_url, wms_layers="ortho", wms_format="image/png"),
            tmp_path / "c.mbtiles",
            patch_cfg,
        )
        patches = {"xyz": xyz.patch_at(lat, lon), "wms": wms.patch_at(lat, lon)}
        assert xyz.stats()["fetch_errors"] == 0 and wms.stats()["fetch_errors"] == 0
        xyz.close()
        wms.close()
    with GeoTiffPatchSource(tif, size_px, m_per_px) as direct:
        patches["geotiff"] = direct.patch_at(lat, lon)
    for name, patch in patches.items():
        assert patch.m_per_px == m_per_px and patch.size_px == (size_px, size_px)
        ref = _reference(tif, tiler, patch)
        dx, dy, corr = _shift_px(patch, ref)
        # The issue asks for 1 px; measured 0.01-0.08 px, so assert a tighter 0.3 px that
        # also catches half-pixel convention slips.
        assert np.hypot(dx, dy) < 0.3, f"{name}: patch is off by ({dx:.2f}, {dy:.2f}) px"
        assert corr > 0.9, f"{name}: correlation with the GeoTIFF only {corr:.3f}"


def test_cache_file_is_readable_as_mbtiles(server: TileServer, tmp_path: Path) -> None:
    """The cache database opens as a plain MBTiles tileset and yields the same patch."""
    w, s, e, n = server.tiler.bounds_lonlat
    lat, lon = (s + n) / 2, (w + e) / 2
    cfg = PatchConfig(patch_size_px=256, patch_m_per_px=0.5)
    online = build_patch_source(server.template(), tmp_path / "c.mbtiles", cfg)
    a = online.patch_at(lat, lon)
    online.close()
    as_mbtiles = build_patch_source(str(tmp_path / "c.mbtiles"), None, cfg)
    assert isinstance(as_mbtiles, TilePatchSource)
    b = as_mbtiles.patch_at(lat, lon)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.valid_mask, b.valid_mask)
    con = sqlite3.connect(tmp_path / "c.mbtiles")
    names = dict(con.execute("SELECT name, value FROM metadata").fetchall())
    assert names["format"] == "png" and "cvgl_ros_source_id" in names
    assert con.execute("SELECT COUNT(*) FROM tiles").fetchone()[0] > 0
    con.close()


def _source(server: TileServer, tmp_path: Path, **kw: object) -> TilePatchSource:
    cfg = TileSourceConfig(
        source=server.template(),
        backoff_base_s=0.01,
        backoff_max_s=2.0,
        read_timeout_s=float(kw.pop("read_timeout_s", 5.0)),  # type: ignore[arg-type]
        max_retries=int(kw.pop("max_retries", 3)),  # type: ignore[call-overload]
        max_requests_per_s=100.0,
    )
    patch = PatchConfig(patch_size_px=int(kw.pop("size", 64)), patch_m_per_px=0.5)  # type: ignore[call-overload]
    src = build_patch_source(cfg, tmp_path / "c.mbtiles", patch, **kw)  # type: ignore[arg-type]
    assert isinstance(src, TilePatchSource)
    return src


def _centre(server: TileServer) -> tuple[float, float]:
    w, s, e, n = server.tiler.bounds_lonlat
    return (s + n) / 2, (w + e) / 2


class TestFaults:
    def test_server_errors_are_retried(self, server: TileServer, tmp_path: Path) -> None:
        server.set_fault(Fault(times=2, status=500))
        src = _source(server, tmp_path)
        patch = src.patch_at(*_centre(server))
        st = src.stats()
        assert patch.valid_mask.all()
        assert st["http_5xx"] == 2 and st["http_retries"] >= 2 and st["fetch_errors"] == 0
        src.close()

    def test_persistent_500_gives_no_imagery_and_counts(
        self, server: TileServer, tmp_path: Path
    ) -> None:
        server.set_fault(Fault(times=1000, status=503))
        src = _source(server, tmp_path, max_retries=1)
        with pytest.raises(NoImageryError):
            src.patch_at(*_centre(server))
        st = src.stats()
        assert st["fetch_errors"] >= 1 and st["cache.tiles"] == 0 and st["no_imagery"] == 1
        # A second call does not hammer the failing server (failures remembered briefly).
        before = server.request_count()
        with pytest.raises(NoImageryError):
            src.patch_at(*_centre(server))
        assert server.request_count() == before
        assert src.stats()["skipped_recent_failure"] >= 1
        src.close()

    def test_404_outside_the_ortho_is_masked(self, server: TileServer, tmp_path: Path) -> None:
        _, _, e, n = server.tiler.bounds_lonlat
        src = _source(server, tmp_path, size=512)  # 256 m patch at the ortho's NE corner
        patch = src.patch_at(n, e)
        st = src.stats()
        assert st["not_found"] >= 1 and st["fetch_errors"] == 0
        assert 0.1 < patch.valid_mask.mean() < 0.5
        assert patch.valid_mask[-10:, :10].all() and not patch.valid_mask[:10, -10:].any()
        src.close()

    def test_429_retry_after_is_honoured(self, server: TileServer, tmp_path: Path) -> None:
        server.set_fault(Fault(times=1, status=429, retry_after_s=0.4))
        src = _source(server, tmp_path)
        t0 = len(server.requests)
        patch = src.patch_at(*_centre(server))
        times = [t for t, _ in server.requests[t0:]]
        assert patch.valid_mask.all() and src.stats()["http_429"] == 1
        # Nothing reached the server within Retry-After of the 429.
        assert times[1] - times[0] >= 0.4 - 0.02
        src.close()

    def test_slow_server_times_out(self, server: TileServer, tmp_path: Path) -> None:
        server.set_fault(Fault(times=1000, delay_s=0.6))
        src = _source(server, tmp_path, read_timeout_s=0.15, max_retries=0)
        with pytest.raises(NoImageryError):
            src.patch_at(*_centre(server))
        st = src.stats()
        assert st["http_timeouts"] >= 1 and st["cache.tiles"] == 0
        src.close()

    @pytest.mark.parametrize("fault", [Fault(1000, truncate=True), Fault(1000, html=True)])
    def test_corrupt_bodies_are_never_cached(
        self, server: TileServer, tmp_path: Path, fault: Fault
    ) -> None:
        server.set_fault(fault)
        src = _source(server, tmp_path, max_retries=1)
        with pytest.raises(NoImageryError):
            src.patch_at(*_centre(server))
        st = src.stats()
        assert st["fetch_errors"] >= 1 and st["cache.tiles"] == 0
        assert st["http_invalid_bodies"] + st["http_connection_errors"] >= 2
        server.clear_faults()
        cache = TileCache(tmp_path / "c.mbtiles")
        assert cache.verify() == (0, [])
        cache.close()
        src.close()

    def test_unreachable_server(self, tmp_path: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again: connection refused
        cfg = TileSourceConfig(
            source=f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png",
            max_retries=1,
            backoff_base_s=0.01,
        )
        src = build_patch_source(cfg, tmp_path / "c.mbtiles", PatchConfig(64, 0.5))
        with pytest.raises(NoImageryError):
            src.patch_at(33.638, -84.479)
        st = src.stats()
        assert st["http_connection_errors"] >= 2 and st["fetch_errors"] >= 1
        src.close()

    def test_locked_database_keeps_serving(self, server: TileServer, tmp_path: Path) -> None:
        path = tmp_path / "c.mbtiles"
        TileCache(path).close()
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        cfg = TileSourceConfig(source=server.template(), max_requests_per_s=100.0)
        src = build_patch_source(
            cfg, path, PatchConfig(64, 0.5), cache_config=CacheConfig(busy_timeout_s=0.1)
        )
        try:
            patch = src.patch_at(*_centre(server))  # fetched tiles are used even unstored
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        st = src.stats()
        assert patch.valid_mask.all()
        assert st["cache_write_errors"] >= 1 and st["cache.locked_errors"] >= 1
        cache = TileCache(path)
        assert cache.verify() == (0, [])  # nothing half-written
        # The lock is gone: the tiles the database refused are stored on a later call.
        time.sleep(1.05)
        src.patch_at(*_centre(server))
        assert cache.tile_count() >= 1 and src.stats()["stored_later"] >= 1
        cache.close()
        src.close()

    def test_locked_database_raises_typed_error(self, server: TileServer, tmp_path: Path) -> None:
        path = tmp_path / "c.mbtiles"
        cache = TileCache(path, CacheConfig(busy_timeout_s=0.05))
        data = server.tiler.tile(18, *_any_tile(server))
        assert data is not None
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(CacheLockedError):
                cache.put("s", 18, 1, 1, data)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert cache.stats()["locked_errors"] == 1
        cache.put("s", 18, 1, 1, data)
        assert cache.verify() == (1, [])
        cache.close()

    def test_full_disk_is_reported_and_cache_stays_valid(
        self, server: TileServer, tmp_path: Path
    ) -> None:
        cache = TileCache(tmp_path / "c.mbtiles")
        data = server.tiler.tile(18, *_any_tile(server))
        assert data is not None
        cache.put("s", 18, 1, 1, data)
        # SQLITE_FULL for real: cap the database at its current page count.
        conn = cache._conn()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(CacheFullError):
            cache.put("s", 18, 1, 2, data)
        st = cache.stats()
        assert st["full_errors"] == 1 and st["tiles"] == 1
        assert cache.verify() == (1, [])
        cache.close()


def _any_tile(server: TileServer) -> tuple[int, int]:
    lat, lon = _centre(server)
    import mercantile

    t = mercantile.tile(lon, lat, 18)
    return t.x, t.y


class TestPoliteness:
    def test_user_agent_and_headers_reach_the_server(
        self, server: TileServer, tmp_path: Path
    ) -> None:
        cfg = TileSourceConfig(
            source=server.template(),
            user_agent="cvgl-test/1.0 (+ops@example.org)",
            headers=(("X-Api-Key", "secret"),),
        )
        start = len(server.headers)
        src = build_patch_source(cfg, tmp_path / "c.mbtiles", PatchConfig(64, 0.5))
        src.patch_at(*_centre(server))
        seen = server.headers[start:]
        assert seen and all(h["User-Agent"] == "cvgl-test/1.0 (+ops@example.org)" for h in seen)
        assert all(h["X-Api-Key"] == "secret" for h in seen)
        src.close()

    def test_rate_and_concurrency_limits(self, server: TileServer, tmp_path: Path) -> None:
        """8 threads ask for 12 tiles; the server never sees more than 2 at once, and the
        requests are paced at <= 20 per second."""
        from concurrent.futures import ThreadPoolExecutor

        from cvgl_ros.tiles.factory import build_tile_source
        from cvgl_ros.tiles.geo import tiles_in_radius

        server.set_fault(Fault(times=1000, delay_s=0.05))
        source = build_tile_source(
            TileSourceConfig(
                source=server.template(), max_concurrent_requests=2, max_requests_per_s=20.0
            )
        )
        tiles = tiles_in_radius(*_centre(server), 200.0, 19)[:12]
        start = len(server.requests)
        server.max_in_flight = 0
        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda t: source.fetch(*t), tiles))
        times = sorted(t for t, _ in server.requests[start:])
        assert len(bodies) == 12 and server.max_in_flight <= 2
        assert times[-1] - times[0] >= 11 / 20.0 - 0.02
        assert source.stats()["http_requests"] == 12
        source.close()


class TestOfflineAndBadFixes:
    def test_offline_makes_zero_network_calls(self, server: TileServer, tmp_path: Path) -> None:
        lat, lon = _centre(server)
        online = _source(server, tmp_path)
        warm = online.patch_at(lat, lon)
        online.close()
        before = server.request_count()
        offline = _source(server, tmp_path, offline=True)
        again = offline.patch_at(lat, lon)
        assert np.array_equal(warm.image, again.image)
        with pytest.raises(NoImageryError):  # not cached: no imagery, and no request either
            offline.patch_at(lat + 0.01, lon)
        st = offline.stats()
        assert server.request_count() == before
        assert st["unavailable_offline"] >= 1 and "http_requests" not in st
        offline.close()

    def test_pole_and_nan_fixes(self, server: TileServer, tmp_path: Path) -> None:
        src = _source(server, tmp_path)
        before = server.request_count()
        with pytest.raises(OutsideTileGridError):
            src.patch_at(89.5, 10.0)
        with pytest.raises(NoImageryError):
            src.patch_at(-90.0, 0.0)
        for lat, lon in [(float("nan"), 0.0), (0.0, float("inf")), (95.0, 0.0)]:
            with pytest.raises(InvalidInputError):
                src.patch_at(lat, lon)
        assert server.request_count() == before
        assert src.stats()["no_imagery"] == 2
        src.close()
