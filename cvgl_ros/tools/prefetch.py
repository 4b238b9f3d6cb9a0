"""``cvgl-ros prefetch``: download the tiles of an area or a route into the tile cache.

Examples::

    cvgl-ros prefetch --source 'https://tiles.example/{z}/{x}/{y}.jpg' \\
        --cache ~/.cache/cvgl_ros/tiles.mbtiles --lat 47.37 --lon 8.54 --radius-m 500 --zoom 18
    cvgl-ros prefetch --source wms:https://geo.example/wms --wms-layers ortho \\
        --cache tiles.mbtiles --bbox 8.53,47.36,8.55,47.38 --zoom 17-19
    cvgl-ros prefetch --source ... --cache tiles.mbtiles --gpx route.gpx --radius-m 150 --zoom 18

Exit status: 0 only when every requested tile is in the cache afterwards; 1 when some are
missing (not found at the source or failed); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def parse_zooms(text: str) -> list[int]:
    """``18`` -> [18]; ``17-19`` -> [17, 18, 19]; ``16,18`` -> [16, 18]."""
    zooms: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = (int(v) for v in part.split("-", 1))
            zooms.update(range(min(a, b), max(a, b) + 1))
        elif part:
            zooms.add(int(part))
    if not zooms or not all(0 <= z <= 24 for z in zooms):
        raise ValueError(f"zoom levels must be in [0, 24], got {text!r}")
    return sorted(zooms)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``W,S,E,N`` degrees."""
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 4:
        raise ValueError(f"--bbox needs W,S,E,N, got {text!r}")
    w, s, e, n = parts
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise ValueError(f"--bbox must satisfy W < E, S < N within WGS84 ranges, got {text!r}")
    return w, s, e, n


def read_gpx_points(path: Path) -> list[tuple[float, float]]:
    """(lat, lon) of every track, route and waypoint of a GPX file, in file order."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ValueError(f"cannot read GPX {path}: {exc}") from exc
    points = []
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag in ("trkpt", "rtept", "wpt") and "lat" in el.attrib and "lon" in el.attrib:
            points.append((float(el.attrib["lat"]), float(el.attrib["lon"])))
    if not points:
        raise ValueError(f"{path} holds no trkpt/rtept/wpt points")
    return points


def route_tiles(
    points: list[tuple[float, float]], radius_m: float, zoom: int
) -> list[tuple[int, int, int]]:
    """Tiles within ``radius_m`` of a route (densified every radius/2), in route order."""
    import pyproj

    from cvgl_ros.tiles.geo import tiles_in_radius

    geod = pyproj.Geod(ellps="WGS84")
    dense: list[tuple[float, float]] = [points[0]]
    for (la0, lo0), (la1, lo1) in itertools.pairwise(points):
        dist = geod.inv(lo0, la0, lo1, la1)[2]
        n = int(dist // max(radius_m / 2.0, 1.0))
        if n > 0:
            dense += [(la, lo) for lo, la in geod.npts(lo0, la0, lo1, la1, n)]
        dense.append((la1, lo1))
    seen: set[tuple[int, int, int]] = set()
    out = []
    for la, lo in dense:
        for t in tiles_in_radius(la, lo, radius_m, zoom):
            if t not in seen:
                seen.add(t)
                out.append(t)
    return out


def requested_tiles(args: argparse.Namespace, zooms: list[int]) -> list[tuple[int, int, int]]:
    """The tiles of the requested area, for every zoom, nearest/route order kept."""
    from cvgl_ros.tiles.geo import tiles_in_bbox, tiles_in_radius

    tiles: list[tuple[int, int, int]] = []
    for z in zooms:
        if args.bbox:
            tiles += tiles_in_bbox(*parse_bbox(args.bbox), z)
        elif args.gpx:
            tiles += route_tiles(read_gpx_points(Path(args.gpx)), args.radius_m or 100.0, z)
        else:
            if args.lat is None or args.lon is None or args.radius_m is None:
                raise ValueError("give --lat, --lon and --radius-m, or --bbox, or --gpx")
            tiles += tiles_in_radius(args.lat, args.lon, args.radius_m, z)
    return tiles


def run_prefetch(args: argparse.Namespace) -> dict[str, Any]:
    """Fetch every requested tile into the cache; returns the summary counts."""
    from tqdm import tqdm

    from cvgl_ros.tiles.cache import TileCache
    from cvgl_ros.tiles.config import CacheConfig, TileSourceConfig
    from cvgl_ros.tiles.factory import build_tile_source
    from cvgl_ros.tiles.provider import TileProvider

    zooms = parse_zooms(args.zoom)
    # The zoom levels asked for on the command line are the ones this source must serve.
    src_cfg = TileSourceConfig(
        source=args.source,
        min_zoom=min(zooms),
        max_zoom=max(zooms),
        source_id=args.source_id or "",
        tile_size_px=args.tile_size_px,
        headers=tuple(args.header or ()),
        user_agent=args.user_agent,
        max_concurrent_requests=args.workers,
        max_requests_per_s=args.max_requests_per_s,
        read_timeout_s=args.timeout_s,
        max_retries=args.retries,
        wms_layers=args.wms_layers,
        wms_format=args.wms_format,
    )
    if src_cfg.kind == "geotiff":
        raise ValueError("a GeoTIFF is read directly by the node; there is nothing to prefetch")
    tiles = requested_tiles(args, zooms)
    cache_cfg = CacheConfig(
        max_size_bytes=int(args.max_size_mb * 1024 * 1024)
        if args.max_size_mb
        else CacheConfig().max_size_bytes,
        memory_tiles=0,
    )
    cache = TileCache(Path(args.cache), cache_cfg)
    source = build_tile_source(src_cfg)
    provider = TileProvider(source, cache, cache_config=cache_cfg, source_id=src_cfg.source_id)
    counts = {"cached": 0, "fetched": 0, "not_found": 0, "failed": 0, "offline": 0}
    t0 = time.perf_counter()
    interrupted = False
    bar = tqdm(total=len(tiles), unit="tile", disable=args.no_progress, file=sys.stderr)
    try:
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            pending: set[Future[str]] = set()
            it = iter(tiles)
            try:
                for t in it:
                    pending.add(pool.submit(provider.ensure_cached, *t))
                    if len(pending) >= 4 * args.workers:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in done:
                            counts[f.result()] += 1
                            bar.update(1)
                for f in pending:
                    counts[f.result()] += 1
                    bar.update(1)
            except KeyboardInterrupt:
                interrupted = True
                for f in pending:
                    f.cancel()
    finally:
        bar.close()
        stats = provider.stats()
        provider.close()
    elapsed = time.perf_counter() - t0
    in_cache = counts["cached"] + counts["fetched"]
    return {
        "requested": len(tiles),
        "already_cached": counts["cached"],
        "fetched": counts["fetched"],
        "not_found": counts["not_found"],
        "failed": counts["failed"] + counts["offline"],
        "in_cache": in_cache,
        "zooms": zooms,
        "elapsed_s": elapsed,
        "fetched_bytes": stats.get("fetched_bytes", 0),
        "http_retries": stats.get("http_retries", 0),
        "cache_size_bytes": stats.get("cache.size_bytes", 0),
        "interrupted": interrupted,
    }


def _main(args: argparse.Namespace) -> int:
    from cvgl_ros.tiles.errors import TilesError

    try:
        summary = run_prefetch(args)
    except (ValueError, FileNotFoundError, TilesError) as exc:  # incl. an unusable cache file
        print(f"prefetch: error: {exc}", file=sys.stderr)
        return 2
    s = summary
    rate = s["fetched"] / s["elapsed_s"] if s["elapsed_s"] > 0 else 0.0
    print(
        f"prefetch: {s['requested']} tiles (zoom {','.join(map(str, s['zooms']))}): "
        f"{s['already_cached']} already cached, {s['fetched']} fetched, "
        f"{s['not_found']} not found, {s['failed']} failed; "
        f"{s['fetched_bytes'] / 1e6:.1f} MB in {s['elapsed_s']:.1f} s ({rate:.1f} tiles/s), "
        f"{s['http_retries']} retries; cache now {s['cache_size_bytes'] / 1e6:.1f} MB"
    )
    if s["interrupted"]:
        print("prefetch: interrupted", file=sys.stderr)
        return 130
    return 0 if s["in_cache"] == s["requested"] else 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``prefetch`` subcommand."""
    p = sub.add_parser(
        "prefetch",
        help="download aerial tiles of an area or route into the tile cache",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", required=True, help="URL template, wms:URL or .mbtiles file")
    p.add_argument("--cache", required=True, help="tile cache database (created if missing)")
    area = p.add_mutually_exclusive_group(required=True)
    area.add_argument("--lat", type=float, help="centre latitude, degrees (with --lon)")
    area.add_argument("--bbox", help="W,S,E,N in degrees")
    area.add_argument("--gpx", help="GPX route/track: tiles within --radius-m of it")
    p.add_argument("--lon", type=float, help="centre longitude, degrees")
    p.add_argument("--radius-m", type=float, help="radius around the point or route, metres")
    p.add_argument("--zoom", required=True, help="zoom level(s): 18, 17-19 or 16,18")
    p.add_argument("--source-id", default="", help="cache key of the source (default: derived)")
    p.add_argument("--tile-size-px", type=int, default=256, help="tile edge, pixels")
    p.add_argument("--header", action="append", help="extra HTTP header 'Name: value'")
    p.add_argument(
        "--user-agent",
        default="cvgl_ros/0.1 prefetch (+https://github.com/cvgl-ros/cvgl_ros)",
        help="HTTP User-Agent (tile policies require an identifying one)",
    )
    p.add_argument("--workers", type=int, default=4, help="concurrent downloads")
    p.add_argument(
        "--max-requests-per-s", type=float, default=10.0, help="request rate limit, per second"
    )
    p.add_argument("--timeout-s", type=float, default=10.0, help="read timeout, seconds")
    p.add_argument("--retries", type=int, default=3, help="retries per tile")
    p.add_argument("--max-size-mb", type=float, default=0.0, help="cache size bound, MB")
    p.add_argument("--wms-layers", default="", help="WMS LAYERS (wms: sources)")
    p.add_argument("--wms-format", default="image/jpeg", help="WMS FORMAT (wms: sources)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_main)
