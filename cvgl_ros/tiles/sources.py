"""Tile sources: where the bytes of one z/x/y tile come from.

A source only fetches; caching, decoding into pixels and patch assembly live elsewhere
(:mod:`.cache`, :mod:`.provider`, :mod:`.patch`). Every source returns complete, decodable image
bytes or raises: :class:`TileNotFoundError` (no tile there) or :class:`TileFetchError` /
:class:`TileDecodeError` (a failure worth counting).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import mercantile

from cvgl_ros.tiles.config import TileSourceConfig, default_source_id, wmts_to_xyz_template
from cvgl_ros.tiles.errors import TileDecodeError, TileFetchError, TileNotFoundError
from cvgl_ros.tiles.geo import quadkey
from cvgl_ros.tiles.http import PoliteHttpClient
from cvgl_ros.tiles.imaging import check_complete


@runtime_checkable
class TileSource(Protocol):
    """Fetches encoded tiles of the Web Mercator (EPSG:3857) XYZ grid."""

    source_id: str
    tile_size_px: int
    min_zoom: int
    max_zoom: int
    is_remote: bool

    def fetch(self, z: int, x: int, y: int) -> bytes:
        """Encoded image bytes (JPEG/PNG/WebP) of tile z/x/y (y down from the north).

        Raises:
            TileNotFoundError: the source has no tile there.
            TileFetchError: a transport or server failure.
            TileDecodeError: the source returned bytes that are not a complete image.
        """
        ...

    def stats(self) -> dict[str, int]:
        """Counters of this source."""
        ...

    def close(self) -> None:
        """Release connections / file handles."""
        ...


def _check_tile_index(z: int, x: int, y: int, min_zoom: int, max_zoom: int) -> None:
    n = 1 << z
    if not (min_zoom <= z <= max_zoom) or not (0 <= x < n and 0 <= y < n):
        raise TileNotFoundError(
            f"tile {z}/{x}/{y} outside the source's grid (z {min_zoom}-{max_zoom})"
        )


def _validate_body(body: bytes, content_type: str) -> None:
    try:
        check_complete(body)
    except TileDecodeError as exc:
        if "xml" in content_type.lower() and b"ServiceException" in body[:4096]:
            text = body[:300].decode("utf-8", "replace")
            raise TileDecodeError(f"WMS ServiceException: {text}") from exc
        raise


class HttpTileSource:
    """XYZ / WMTS-REST tiles over HTTP(S) from a URL template.

    Placeholders: ``{z}``, ``{x}``, ``{y}`` (or the WMTS REST ``{TileMatrix}``, ``{TileCol}``,
    ``{TileRow}`` of a WebMercatorQuad set), ``{-y}`` (TMS row, flipped), ``{s}`` (one of
    ``subdomains``, chosen from x + y so one tile always comes from the same host and
    CDN cache), ``{q}`` (Bing quadkey).
    """

    is_remote = True

    def __init__(self, config: TileSourceConfig, session: Any = None) -> None:
        if config.kind != "xyz":
            raise ValueError(f"HttpTileSource needs a URL template, got {config.source!r}")
        self.config = config
        self.source_id = config.source_id
        self.tile_size_px = config.tile_size_px
        self.min_zoom = config.min_zoom
        self.max_zoom = config.max_zoom
        self._client = PoliteHttpClient(config, session=session)

    def url(self, z: int, x: int, y: int) -> str:
        """The URL of tile z/x/y."""
        t = wmts_to_xyz_template(self.config.source)
        if "{s}" in t:
            subs = self.config.subdomains
            t = t.replace("{s}", subs[(x + y) % len(subs)])
        if "{q}" in t:
            t = t.replace("{q}", quadkey(z, x, y))
        return (
            t.replace("{z}", str(z))
            .replace("{x}", str(x))
            .replace("{-y}", str((1 << z) - 1 - y))
            .replace("{y}", str(y))
        )

    def fetch(self, z: int, x: int, y: int) -> bytes:
        """See :class:`TileSource`."""
        _check_tile_index(z, x, y, self.min_zoom, self.max_zoom)
        body, _ = self._client.get(self.url(z, x, y), validate=_validate_body)
        return body

    def stats(self) -> dict[str, int]:
        """HTTP counters (requests, retries, bytes, 404/429/5xx, timeouts, ...)."""
        return dict(self._client.counters)

    def close(self) -> None:
        """Close the HTTP session."""
        self._client.close()


class WmsTileSource:
    """OGC WMS ``GetMap`` requests shaped as XYZ tiles (EPSG:3857 bounding box per tile).

    Serving WMS through the XYZ grid lets one cache and one patch builder handle both: each
    tile is a GetMap of exactly the tile's Web Mercator bounds at ``tile_size_px``.
    """

    is_remote = True

    def __init__(self, config: TileSourceConfig, session: Any = None) -> None:
        if config.kind != "wms":
            raise ValueError(f"WmsTileSource needs 'wms:URL', got {config.source!r}")
        self.config = config
        self.base_url = config.source.strip()[4:]
        self.source_id = config.source_id
        self.tile_size_px = config.tile_size_px
        self.min_zoom = config.min_zoom
        self.max_zoom = config.max_zoom
        self._client = PoliteHttpClient(config, session=session)

    def params(self, z: int, x: int, y: int) -> dict[str, str]:
        """GetMap query parameters of tile z/x/y."""
        c = self.config
        b = mercantile.xy_bounds(x, y, z)
        crs_key = "CRS" if c.wms_version == "1.3.0" else "SRS"
        return {
            "SERVICE": "WMS",
            "VERSION": c.wms_version,
            "REQUEST": "GetMap",
            "LAYERS": c.wms_layers,
            "STYLES": c.wms_styles,
            "FORMAT": c.wms_format,
            "TRANSPARENT": "TRUE" if c.wms_format == "image/png" else "FALSE",
            crs_key: "EPSG:3857",  # projected: x,y axis order in both 1.1.1 and 1.3.0
            "BBOX": f"{b.left!r},{b.bottom!r},{b.right!r},{b.top!r}",
            "WIDTH": str(c.tile_size_px),
            "HEIGHT": str(c.tile_size_px),
        }

    def fetch(self, z: int, x: int, y: int) -> bytes:
        """See :class:`TileSource`."""
        _check_tile_index(z, x, y, self.min_zoom, self.max_zoom)
        body, _ = self._client.get(self.base_url, self.params(z, x, y), validate=_validate_body)
        return body

    def stats(self) -> dict[str, int]:
        """HTTP counters."""
        return dict(self._client.counters)

    def close(self) -> None:
        """Close the HTTP session."""
        self._client.close()


class MBTilesTileSource:
    """Tiles from an MBTiles file (``gdal_translate -of MBTILES``, QGIS, our own cache).

    MBTiles rows follow the TMS convention (row 0 in the south); this class converts. Opened
    read-only; one SQLite connection per thread.
    """

    is_remote = False

    def __init__(self, path: str | Path, source_id: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"MBTiles file not found: {self.path}")
        self.source_id = source_id or default_source_id(str(self.path.resolve()))
        self._local = threading.local()
        self._counters = {"mbtiles_reads": 0, "mbtiles_missing": 0, "mbtiles_bytes": 0}
        self._lock = threading.Lock()
        meta = dict(self._conn().execute("SELECT name, value FROM metadata").fetchall())
        zooms = (
            self._conn().execute("SELECT MIN(zoom_level), MAX(zoom_level) FROM tiles").fetchone()
        )
        self.metadata: dict[str, str] = {str(k): str(v) for k, v in meta.items()}
        lo, hi = (0, 24) if zooms is None or zooms[0] is None else (zooms[0], zooms[1])
        self.min_zoom = int(meta.get("minzoom", lo))
        self.max_zoom = int(meta.get("maxzoom", hi))
        self.tile_size_px = int(meta.get("tile_size") or meta.get("tilesize") or 256)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            uri = f"file:{self.path.resolve()}?mode=ro"
            try:
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10.0)
                conn.execute("SELECT 1 FROM tiles LIMIT 1")
            except sqlite3.DatabaseError as exc:
                raise ValueError(f"{self.path} is not an MBTiles database: {exc}") from exc
            self._local.conn = conn
        return conn

    def fetch(self, z: int, x: int, y: int) -> bytes:
        """See :class:`TileSource`."""
        _check_tile_index(z, x, y, 0, 24)
        tms_row = (1 << z) - 1 - y
        try:
            row = (
                self._conn()
                .execute(
                    "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? "
                    "AND tile_row = ?",
                    (z, x, tms_row),
                )
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise TileFetchError(f"{self.path}: {exc}") from exc
        with self._lock:
            self._counters["mbtiles_reads"] += 1
            if row is None:
                self._counters["mbtiles_missing"] += 1
        if row is None:
            raise TileNotFoundError(f"{self.path.name} has no tile {z}/{x}/{y}")
        data = bytes(row[0])
        with self._lock:
            self._counters["mbtiles_bytes"] += len(data)
        return data

    def stats(self) -> dict[str, int]:
        """Read counters."""
        with self._lock:
            return dict(self._counters)

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
