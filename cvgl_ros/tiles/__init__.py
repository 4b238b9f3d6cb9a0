"""Aerial imagery: tile sources, a durable disk cache, prefetch and metric patches.

Lives here: the tile source interface and its implementations (XYZ/WMTS over HTTP, OGC WMS,
MBTiles files, local GeoTIFF orthophotos), the MBTiles-compatible SQLite cache with atomic
writes, decode validation and LRU eviction, the background prefetch worker that follows the GNSS
fix, and the assembly of north-up metric ``AerialPatch`` images centred on a fix.

Entry point: :func:`build_patch_source` (source string + cache path + :class:`PatchConfig`
-> a ``PatchSource`` with ``patch_at(lat_deg, lon_deg) -> AerialPatch``). See docs/TILES.md.

The errors are imported with the package, the other names below on first use
(:mod:`cvgl_ros.lazy`): importing ``cvgl_ros.tiles.config`` does not import rasterio or the HTTP
stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvgl_ros.lazy import lazy_exports
from cvgl_ros.tiles.errors import (
    CacheError,
    CacheFullError,
    CacheLockedError,
    NoImageryError,
    OfflineError,
    OutsideTileGridError,
    TileDecodeError,
    TileFetchError,
    TileNotFoundError,
    TilesError,
)

if TYPE_CHECKING:
    from cvgl_ros.tiles.config import CacheConfig, PatchConfig, PrefetchConfig, TileSourceConfig
    from cvgl_ros.tiles.factory import build_patch_source
    from cvgl_ros.tiles.geotiff import GeoTiffPatchSource

__all__ = [
    "CacheConfig",
    "CacheError",
    "CacheFullError",
    "CacheLockedError",
    "GeoTiffPatchSource",
    "NoImageryError",
    "OfflineError",
    "OutsideTileGridError",
    "PatchConfig",
    "PrefetchConfig",
    "TileDecodeError",
    "TileFetchError",
    "TileNotFoundError",
    "TileSourceConfig",
    "TilesError",
    "build_patch_source",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cvgl_ros.tiles.config": (
            "CacheConfig",
            "PatchConfig",
            "PrefetchConfig",
            "TileSourceConfig",
        ),
        "cvgl_ros.tiles.factory": ("build_patch_source",),
        "cvgl_ros.tiles.geotiff": ("GeoTiffPatchSource",),
    },
)
