"""Prefetch (background worker and CLI) against a real local tile server; crash safety,
concurrency between processes, eviction bound."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiles_test_server import Fault, OrthoTiler, TileServer

from cvgl_ros.tiles import CacheConfig, PatchConfig, PrefetchConfig, TileSourceConfig
from cvgl_ros.tiles import build_patch_source as build
from cvgl_ros.tiles.cache import TileCache
from cvgl_ros.tiles.factory import build_tile_source
from cvgl_ros.tiles.geo import tiles_in_radius
from cvgl_ros.tiles.patch import TilePatchSource
from cvgl_ros.tiles.prefetch import Prefetcher
from cvgl_ros.tiles.provider import TileProvider

pytestmark = [
    pytest.mark.data,
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]

ATLANTA = "spacenet_solaris_samples/sample_geotiff.tif"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def atlanta(shared_data: Path) -> Iterator[TileServer]:
    with TileServer(OrthoTiler(shared_data / ATLANTA)) as server:
        yield server


@pytest.fixture
def server(atlanta: TileServer) -> Iterator[TileServer]:
    atlanta.clear_faults()
    yield atlanta
    atlanta.clear_faults()


def _centre(server: TileServer) -> tuple[float, float]:
    w, s, e, n = server.tiler.bounds_lonlat
    return (s + n) / 2, (w + e) / 2


def _bbox(server: TileServer) -> str:
    w, s, e, n = server.tiler.bounds_lonlat
    # Shrink by ~25 m so every tile of the bbox exists at the server.
    d = 0.00025
    return f"{w + d},{s + d},{e - d},{n - d}"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cvgl_ros.tools.cli", "prefetch", "--no-progress", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _provider(server: TileServer, cache: TileCache, **cfg: object) -> TileProvider:
    src_cfg = TileSourceConfig(
        source=server.template(), max_requests_per_s=200.0, backoff_base_s=0.01, **cfg
    )  # type: ignore[arg-type]
    return TileProvider(build_tile_source(src_cfg), cache, source_id=src_cfg.source_id)


def test_background_prefetch_fills_the_radius(server: TileServer, tmp_path: Path) -> None:
    lat, lon = _centre(server)
    server.set_fault(Fault(times=1, delay_s=0.5))  # the first download is slow
    cache = TileCache(tmp_path / "c.mbtiles")
    provider = _provider(server, cache)
    pre = Prefetcher(provider, PrefetchConfig(prefetch_radius_m=120.0, zoom=19), workers=2)
    pre.update_fix(lat, lon)
    # update_fix returned while the (slow) first download is still in flight.
    assert cache.tile_count() == 0
    assert pre.wait_idle(timeout_s=60.0)
    expected = tiles_in_radius(lat, lon, 120.0, 19)
    st = pre.stats()
    assert st["fetched"] + st["not_found"] == len(expected) and st["failed"] == 0
    stored = set(k[1:] for k in cache.tile_keys(provider.source_id))
    assert stored == {t for t in expected if server.tiler.tile(*t) is not None}
    # The same fix again schedules nothing new.
    pre.update_fix(lat, lon)
    assert pre.wait_idle(timeout_s=10.0)
    assert pre.stats()["fetched"] == st["fetched"]
    pre.close()
    provider.close()


def test_patch_source_with_prefetch_and_concurrent_readers(
    server: TileServer, tmp_path: Path
) -> None:
    """One process: the node's prefetcher writes while localization threads read patches;
    another process (the CLI) writes into the same cache at the same time."""
    lat, lon = _centre(server)
    path = tmp_path / "c.mbtiles"
    server.set_fault(Fault(times=400, delay_s=0.01))
    cli = subprocess.Popen(
        _cli("--source", server.template(), "--cache", str(path), f"--bbox={_bbox(server)}",
             "--zoom", "19", "--workers", "2", "--max-requests-per-s", "200"),
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    src = build(
        TileSourceConfig(source=server.template(), max_requests_per_s=200.0),
        path,
        PatchConfig(patch_size_px=256, patch_m_per_px=0.3),
        prefetch_config=PrefetchConfig(prefetch_radius_m=150.0, zoom=19),
    )
    assert isinstance(src, TilePatchSource)
    errors: list[BaseException] = []
    shapes: list[tuple[int, ...]] = []

    def reader(offset_m: float) -> None:
        try:
            for i in range(15):
                p = src.patch_at(lat + offset_m * 1e-5 * (i % 3), lon)
                shapes.append(p.image.shape)
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(k,)) for k in (0.0, 5.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert src.prefetcher is not None and src.prefetcher.wait_idle(timeout_s=120)
    out, err = cli.communicate(timeout=120)
    assert not errors, errors
    assert shapes == [(256, 256, 3)] * 30
    assert cli.returncode == 0, out + err
    st = src.stats()
    assert st["cache_write_errors"] == 0 and st["fetch_errors"] == 0
    src.close()
    cache = TileCache(path)
    n, bad = cache.verify()
    assert n >= len(server.tiler.tiles(19)) // 2 and bad == []
    cache.close()


@pytest.mark.slow
def test_killed_writer_leaves_a_valid_cache(server: TileServer, tmp_path: Path) -> None:
    """SIGKILL the CLI mid-download; every stored tile decodes and a rerun completes."""
    path = tmp_path / "c.mbtiles"
    server.set_fault(Fault(times=10_000, delay_s=0.03))
    args = ("--source", server.template(), "--cache", str(path), f"--bbox={_bbox(server)}",
            "--zoom", "19-20", "--workers", "2", "--max-requests-per-s", "500")  # fmt: skip
    proc = subprocess.Popen(
        _cli(*args), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    stored = 0
    while time.monotonic() < deadline and stored < 20:
        time.sleep(0.1)
        if path.exists():
            try:
                con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
                stored = con.execute("SELECT tiles FROM store_size").fetchone()[0]
                con.close()
            except sqlite3.Error:
                stored = 0
    assert proc.poll() is None, "the writer finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    server.clear_faults()
    cache = TileCache(path)
    n, bad = cache.verify()
    assert n >= 20 and bad == []
    assert cache.size_bytes() == sum(
        len(cache.get(*k) or b"") for k in list(cache.tile_keys())
    )  # the size bookkeeping survived the crash
    cache.close()
    rerun = subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert " already cached" in rerun.stdout and " 0 failed" in rerun.stdout


def test_eviction_keeps_the_size_bound(server: TileServer, tmp_path: Path) -> None:
    bound = 600_000
    cache = TileCache(tmp_path / "c.mbtiles", CacheConfig(max_size_bytes=bound))
    provider = _provider(server, cache)
    tiles = [t for t in server.tiler.tiles(19) if server.tiler.tile(*t) is not None]
    total = sum(len(server.tiler.tile(*t) or b"") for t in tiles)
    assert total > 2 * bound  # the area does not fit
    for t in tiles:
        assert provider.ensure_cached(*t) == "fetched"
        assert cache.size_bytes() <= bound
    st = cache.stats()
    assert st["evicted_tiles"] > 0 and st["size_bytes"] <= bound
    # LRU: the newest tile survived, the oldest went first.
    assert cache.contains(provider.source_id, *tiles[-1])
    assert not cache.contains(provider.source_id, *tiles[0])
    provider.close()


def test_eviction_prefers_recently_read_tiles(server: TileServer, tmp_path: Path) -> None:
    tiles = [t for t in server.tiler.tiles(19) if server.tiler.tile(*t) is not None][:12]
    sizes = [len(server.tiler.tile(*t) or b"") for t in tiles]
    bound = sum(sizes[:8])
    cache = TileCache(
        tmp_path / "c.mbtiles",
        CacheConfig(max_size_bytes=bound, evict_to_fraction=1.0, touch_flush_interval_s=0.0),
    )
    provider = _provider(server, cache)
    for t in tiles[:6]:
        provider.ensure_cached(*t)
    time.sleep(0.01)
    assert cache.get(provider.source_id, *tiles[0]) is not None  # read: now recent
    for t in tiles[6:]:
        provider.ensure_cached(*t)
    assert cache.contains(provider.source_id, *tiles[0])
    assert not cache.contains(provider.source_id, *tiles[1])
    provider.close()


class TestCli:
    def test_point_radius_reports_missing_tiles(self, server: TileServer, tmp_path: Path) -> None:
        _, _, e, n = server.tiler.bounds_lonlat  # around the NE corner: some tiles are 404
        r = subprocess.run(
            _cli("--source", server.template(), "--cache", str(tmp_path / "c.mbtiles"),
                 "--lat", str(n), "--lon", str(e), "--radius-m", "60", "--zoom", "19"),
            env=_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 1, r.stdout + r.stderr
        assert "not found" in r.stdout and " 0 failed" in r.stdout

    def test_gpx_route(self, server: TileServer, tmp_path: Path) -> None:
        w, s, e, n = server.tiler.bounds_lonlat
        gpx = tmp_path / "route.gpx"
        pts = "".join(
            f'<trkpt lat="{s + f * (n - s)}" lon="{w + f * (e - w)}"/>' for f in (0.3, 0.5, 0.7)
        )
        gpx.write_text(
            '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
            f"<trk><trkseg>{pts}</trkseg></trk></gpx>"
        )
        r = subprocess.run(
            _cli("--source", server.template(), "--cache", str(tmp_path / "c.mbtiles"),
                 "--gpx", str(gpx), "--radius-m", "30", "--zoom", "18"),
            env=_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        assert " 0 not found, 0 failed" in r.stdout

    def test_bad_arguments_exit_2(self, tmp_path: Path) -> None:
        r = subprocess.run(
            _cli("--source", "/nope/ortho.tif", "--cache", str(tmp_path / "c.mbtiles"),
                 "--lat", "1", "--lon", "2", "--radius-m", "10", "--zoom", "18"),
            env=_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 2 and "GeoTIFF" in r.stderr
