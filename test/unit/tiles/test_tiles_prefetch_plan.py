"""Prefetch planning (ring order, velocity lookahead) and the worker with an in-memory source."""

from __future__ import annotations

import math
from pathlib import Path

import mercantile
import numpy as np
import pytest
from test_tiles_patch import MarkerSource

from cvgl_ros.tiles import PatchConfig, PrefetchConfig
from cvgl_ros.tiles.cache import TileCache
from cvgl_ros.tiles.geo import lonlat_to_en, tiles_in_radius
from cvgl_ros.tiles.prefetch import Prefetcher, plan_tiles
from cvgl_ros.tiles.provider import TileProvider

LAT, LON = 47.3769, 8.5417


def _dist_m(t: tuple[int, int, int]) -> float:
    b = mercantile.bounds(mercantile.Tile(t[1], t[2], t[0]))
    e, n = lonlat_to_en(
        LAT, LON, np.array([0.5 * (b.west + b.east)]), np.array([0.5 * (b.south + b.north)])
    )
    return float(math.hypot(e[0], n[0]))


def test_ring_order_at_rest() -> None:
    tiles = plan_tiles(LAT, LON, 18, 200.0)
    assert set(tiles) == set(tiles_in_radius(LAT, LON, 200.0, 18))
    d = [_dist_m(t) for t in tiles]
    assert d == sorted(d)  # nearest first
    assert tiles[0] == (18, *mercantile.tile(LON, LAT, 18)[:2])


def test_lookahead_schedules_tiles_ahead_first() -> None:
    # Fix at a tile centre, so that mirrored tiles east and west are equally far.
    here = mercantile.tile(LON, LAT, 18)
    b = mercantile.bounds(here)
    lat, lon = 0.5 * (b.south + b.north), 0.5 * (b.west + b.east)
    at_rest = plan_tiles(lat, lon, 18, 250.0)
    moving = plan_tiles(lat, lon, 18, 250.0, velocity_en_m_s=(20.0, 0.0), lookahead_s=30.0)
    assert set(at_rest) < set(moving)  # the radius is still covered, plus the road ahead
    extra = set(moving) - set(at_rest)
    assert extra and all(t[1] > here.x for t in extra)  # everything extra lies east (ahead)
    for k in (1, 2):
        east, west = (18, here.x + k, here.y), (18, here.x - k, here.y)
        assert moving.index(east) < moving.index(west)


def test_max_tiles_keeps_the_nearest() -> None:
    full = plan_tiles(LAT, LON, 19, 300.0)
    assert plan_tiles(LAT, LON, 19, 300.0, max_tiles=10) == full[:10]


@pytest.mark.parametrize("lat", [89.0, -86.0])
def test_pole_is_refused(lat: float) -> None:
    from cvgl_ros.core.errors import NoImageryError

    with pytest.raises(NoImageryError):
        plan_tiles(lat, 0.0, 18, 100.0)


def test_worker_fetches_the_plan_and_survives_bad_fixes(tmp_path: Path) -> None:
    src = MarkerSource([], 18)
    cache = TileCache(tmp_path / "c.mbtiles")
    provider = TileProvider(src, cache)
    pre = Prefetcher(
        provider,
        PrefetchConfig(prefetch_radius_m=80.0, min_move_m=5.0),
        PatchConfig(patch_size_px=256, patch_m_per_px=0.6),
        workers=2,
    )
    pre.update_fix(float("nan"), 0.0)  # counted, ignored
    pre.update_fix(89.9, 0.0)  # outside Web Mercator: planning fails, worker survives
    assert pre.wait_idle(10.0)
    pre.update_fix(LAT, LON)
    assert pre.wait_idle(30.0)
    z = pre.zoom_for(LAT)
    expected = set(tiles_in_radius(LAT, LON, 80.0, z))
    assert {k[1:] for k in cache.tile_keys()} == expected
    st = pre.stats()
    assert st["errors"] == 2 and st["fetched"] == len(expected) and st["queue"] == 0
    pre.close()
    provider.close()


def test_prefetch_follows_the_resolution_of_the_patches_read(tmp_path: Path) -> None:
    """Adaptive matching reads patches finer than the configured resolution: the prefetcher
    must fill the cache at the zoom those patches use, not the configured one."""
    from cvgl_ros.tiles.patch import TilePatchSource

    src = MarkerSource([], 18)
    provider = TileProvider(src, TileCache(tmp_path / "c.mbtiles"))
    pre = Prefetcher(
        provider,
        PrefetchConfig(prefetch_radius_m=30.0),
        PatchConfig(patch_size_px=64, patch_m_per_px=0.5),
        start=False,
    )
    patches = TilePatchSource(provider, PatchConfig(patch_size_px=64, patch_m_per_px=0.5), pre)
    configured = pre.zoom_for(LAT)
    patches.patch_at(LAT, LON, patch_size_px=64, patch_m_per_px=0.125)
    assert pre.zoom_for(LAT) == patches.zoom_for(LAT, 0.125) == configured + 2
    fixed = Prefetcher(provider, PrefetchConfig(zoom=15), PatchConfig(), start=False)
    fixed.update_fix(LAT, LON, patch_m_per_px=0.125)
    assert fixed.zoom_for(LAT) == 15
    pre.close()
    fixed.close()
    provider.close()
