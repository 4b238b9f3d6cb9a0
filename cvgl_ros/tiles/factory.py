"""One call from a source string to a ready ``PatchSource``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvgl_ros.tiles.config import CacheConfig, PatchConfig, PrefetchConfig, TileSourceConfig
from cvgl_ros.tiles.geotiff import GeoTiffPatchSource

if TYPE_CHECKING:
    from cvgl_ros.tiles.patch import TilePatchSource
    from cvgl_ros.tiles.sources import TileSource


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/cvgl_ros/tiles.mbtiles`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cvgl_ros" / "tiles.mbtiles"


def build_tile_source(config: TileSourceConfig, session: Any = None) -> TileSource:
    """The tile source of an ``xyz``, ``wms`` or ``mbtiles`` config.

    Raises:
        ValueError: for a GeoTIFF config (it is a patch source, not a tile source).
    """
    from cvgl_ros.tiles.sources import HttpTileSource, MBTilesTileSource, WmsTileSource

    kind = config.kind
    if kind == "xyz":
        return HttpTileSource(config, session=session)
    if kind == "wms":
        return WmsTileSource(config, session=session)
    if kind == "mbtiles":
        return MBTilesTileSource(config.source, source_id=config.source_id)
    raise ValueError(f"{config.source!r} is a GeoTIFF: use GeoTiffPatchSource, not tiles")


def build_patch_source(
    source: str | TileSourceConfig,
    cache_path: str | Path | None = None,
    patch_config: PatchConfig | None = None,
    offline: bool = False,
    *,
    cache_config: CacheConfig | None = None,
    prefetch_config: PrefetchConfig | None = None,
    session: Any = None,
) -> GeoTiffPatchSource | TilePatchSource:
    """Build the patch source for a source string or config.

    Args:
        source: an XYZ URL template (``https://host/{z}/{x}/{y}.jpg``), ``wms:URL`` (needs a
            :class:`TileSourceConfig` with ``wms_layers``), an ``.mbtiles`` file or a GeoTIFF
            path; or a full :class:`TileSourceConfig`.
        cache_path: the SQLite tile cache for network sources; ``None`` = the default
            ``~/.cache/cvgl_ros/tiles.mbtiles``. Unused for local files.
        patch_config: patch size and resolution (defaults: 512 px at 0.5 m/px).
        offline: never touch the network: tiles come from the cache only (no HTTP client is
            even created). A cache file this process cannot write (read-only mount or
            permissions) is then opened read-only.
        cache_config: cache size bound and tuning.
        prefetch_config: when given (network sources only), a background worker prefetches
            the tiles around every fix ``patch_at`` sees.
        session: a ``requests.Session``-like object to use (tests, custom TLS).

    Returns:
        An object with ``patch_at(lat_deg, lon_deg) -> AerialPatch`` (raising
        ``NoImageryError``), ``stats() -> dict`` and ``close()``.

    Raises:
        ValueError: unknown source form or invalid configuration.
        FileNotFoundError: a local source file does not exist.
    """
    cfg = source if isinstance(source, TileSourceConfig) else TileSourceConfig(source=source)
    patch = patch_config or PatchConfig()
    if cfg.kind == "geotiff":
        return GeoTiffPatchSource(
            cfg.source,
            patch.patch_size_px,
            patch.patch_m_per_px,
            min_valid_fraction=patch.min_valid_fraction,
            source_id=cfg.source_id,
        )

    from cvgl_ros.tiles.cache import TileCache, is_writable
    from cvgl_ros.tiles.patch import TilePatchSource
    from cvgl_ros.tiles.prefetch import Prefetcher
    from cvgl_ros.tiles.provider import TileProvider

    if cfg.kind == "mbtiles":
        # A local MBTiles file needs no second cache.
        local = build_tile_source(cfg)
        provider = TileProvider(local, cache=None, offline=False, cache_config=cache_config)
        return TilePatchSource(provider, patch)

    path = Path(cache_path) if cache_path else default_cache_path()
    # Offline, a pre-filled cache may sit on a read-only mount: read it without writing.
    read_only = offline and path.is_file() and not is_writable(path)
    cache = TileCache(path, cache_config or CacheConfig(), read_only=read_only)
    remote = None if offline else build_tile_source(cfg, session=session)
    provider = TileProvider(
        remote,
        cache=cache,
        offline=offline,
        cache_config=cache_config,
        source_id=cfg.source_id,
        tile_size_px=cfg.tile_size_px,
        min_zoom=cfg.min_zoom,
        max_zoom=cfg.max_zoom,
    )
    prefetcher = None
    if prefetch_config is not None and not offline:
        prefetcher = Prefetcher(provider, prefetch_config, patch_config=patch)
    return TilePatchSource(provider, patch, prefetcher=prefetcher)
