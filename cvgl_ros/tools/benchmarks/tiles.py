"""Benchmark suite ``tiles``: patch assembly from a warm cache, cold prefetch throughput.

Everything runs against a real HTTP server on 127.0.0.1 started here, serving JPEG tiles
(smoothed noise at the byte size of real aerial JPEGs) so that the numbers do not depend on
``../shared/data``. Baselines are measured in the same run:

* patch assembly vs GDAL's warper (``rasterio.warp.reproject``) on the same mosaic;
* prefetch with 4 workers vs the same prefetch with 1 worker.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cvgl_ros.tools.benchmarks.timing import median_ms

LAT_DEG, LON_DEG = 47.3769, 8.5417
PATCH_PX, PATCH_M_PER_PX = 512, 0.5


def _tile_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), (0, 0), 1.5)
    _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return bytes(buf.tobytes())


class _Server:
    """Serves one of 16 JPEG tiles for every /z/x/y.jpg."""

    def __init__(self) -> None:
        tiles = [_tile_bytes(i) for i in range(16)]

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                body = tiles[(int(parts[-2]) + int(parts[-1].split(".")[0])) % 16]
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.template = f"http://127.0.0.1:{self.httpd.server_address[1]}/{{z}}/{{x}}/{{y}}.jpg"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _gdal_baseline(source: Any) -> Callable[[], object]:
    """The same mosaic warped by GDAL (rasterio.warp.reproject) into the same AEQD grid."""
    import mercantile
    from rasterio.crs import CRS
    from rasterio.transform import Affine
    from rasterio.warp import Resampling, reproject

    zoom = source.zoom_for(LAT_DEG)
    tiles = source.tiles_for_patch(LAT_DEG, LON_DEG)
    xs = sorted({t[1] for t in tiles})
    ys = sorted({t[2] for t in tiles})
    ts = source.provider.tile_size_px
    mosaic = np.zeros((3, len(ys) * ts, len(xs) * ts), np.uint8)
    for z, x, y in tiles:
        tile = source.provider.get_tile(z, x, y)
        r0, c0 = (y - ys[0]) * ts, (x - xs[0]) * ts
        mosaic[:, r0 : r0 + ts, c0 : c0 + ts] = np.moveaxis(tile.rgb, -1, 0)
    b = mercantile.xy_bounds(xs[0], ys[0], zoom)
    res = (b.right - b.left) / ts
    src_t = Affine(res, 0.0, b.left, 0.0, -res, b.top)
    half = PATCH_PX * PATCH_M_PER_PX / 2
    dst_t = Affine(PATCH_M_PER_PX, 0.0, -half, 0.0, -PATCH_M_PER_PX, half)
    dst = np.zeros((3, PATCH_PX, PATCH_PX), np.uint8)

    def run() -> object:
        aeqd = CRS.from_proj4(
            f"+proj=aeqd +lat_0={LAT_DEG} +lon_0={LON_DEG} +datum=WGS84 +units=m +no_defs"
        )
        reproject(
            mosaic, dst, src_transform=src_t, src_crs=CRS.from_epsg(3857), dst_transform=dst_t,
            dst_crs=aeqd, resampling=Resampling.bilinear,
        )  # fmt: skip
        return dst

    return run


def run(quick: bool) -> list[dict[str, object]]:
    """Benchmark rows (see module docstring)."""
    from cvgl_ros.tiles import CacheConfig, PatchConfig, TileSourceConfig, build_patch_source
    from cvgl_ros.tiles.cache import TileCache
    from cvgl_ros.tiles.factory import build_tile_source
    from cvgl_ros.tiles.geo import tiles_in_radius
    from cvgl_ros.tiles.provider import TileProvider

    reps = 10 if quick else 50
    server = _Server()
    rows: list[dict[str, object]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cache_path = Path(tmp) / "bench.mbtiles"
            cfg = TileSourceConfig(source=server.template, max_requests_per_s=10_000.0)
            patch_cfg = PatchConfig(patch_size_px=PATCH_PX, patch_m_per_px=PATCH_M_PER_PX)

            # Warm cache: decoded tiles in memory (the steady state of a moving vehicle).
            warm = build_patch_source(cfg, cache_path, patch_cfg)
            warm_ms = median_ms(lambda: warm.patch_at(LAT_DEG, LON_DEG), reps)
            n_tiles = len(warm.tiles_for_patch(LAT_DEG, LON_DEG))  # type: ignore[union-attr]
            gdal_ms = median_ms(_gdal_baseline(warm), max(3, reps // 5))
            rows.append({
                "name": "patch_512_gdal_warp_baseline", "metric": "median_ms",
                "value": gdal_ms, "notes": "rasterio.warp.reproject of the same mosaic",
            })  # fmt: skip
            rows.append({
                "name": "patch_512_warm_memory", "metric": "median_ms", "value": warm_ms,
                "baseline": "patch_512_gdal_warp_baseline", "ratio": warm_ms / gdal_ms,
                "goal": "< 10 ms",
                "notes": f"{n_tiles} tiles decoded in memory, zoom {warm.stats()['last_zoom']}",
            })  # fmt: skip
            warm.close()
            # Warm disk cache, cold memory: every tile read from SQLite and decoded.
            disk = build_patch_source(
                cfg, cache_path, patch_cfg, offline=True, cache_config=CacheConfig(memory_tiles=0)
            )
            disk_ms = median_ms(lambda: disk.patch_at(LAT_DEG, LON_DEG), reps)
            rows.append({
                "name": "patch_512_warm_disk", "metric": "median_ms", "value": disk_ms,
                "baseline": "patch_512_gdal_warp_baseline", "ratio": disk_ms / gdal_ms,
                "notes": f"{n_tiles} JPEG tiles read from SQLite + decoded (no memory cache)",
            })  # fmt: skip
            disk.close()

            # Cold prefetch throughput: fetch + validate + store, sequential vs 4 workers.
            from concurrent.futures import ThreadPoolExecutor

            radius_m = 250.0 if quick else 600.0
            tiles = tiles_in_radius(LAT_DEG, LON_DEG, radius_m, 19)
            rates: dict[int, float] = {}
            for workers in (1, 4):
                cold = TileCache(Path(tmp) / f"cold{workers}.mbtiles", CacheConfig(memory_tiles=0))
                provider = TileProvider(
                    build_tile_source(
                        TileSourceConfig(
                            source=server.template, max_requests_per_s=10_000.0,
                            max_concurrent_requests=workers,
                        )
                    ),
                    cold,
                )  # fmt: skip
                t0 = time.perf_counter()
                with ThreadPoolExecutor(workers) as pool:
                    results = list(pool.map(lambda t, p=provider: p.ensure_cached(*t), tiles))
                rates[workers] = results.count("fetched") / (time.perf_counter() - t0)
                mb = provider.stats()["fetched_bytes"] / 1e6
                provider.close()
            rows.append({
                "name": "prefetch_cold_sequential_baseline", "metric": "tiles_per_s",
                "value": rates[1], "notes": f"{len(tiles)} tiles, 1 worker",
            })  # fmt: skip
            rows.append({
                "name": "prefetch_cold", "metric": "tiles_per_s", "value": rates[4],
                "baseline": "prefetch_cold_sequential_baseline", "ratio": rates[4] / rates[1],
                "notes": f"{len(tiles)} tiles ({mb:.1f} MB), 4 workers, pooled session; "
                "each tile fetched, decoded, stored in one transaction",
            })  # fmt: skip
    finally:
        server.close()
    return rows
