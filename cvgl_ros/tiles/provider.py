"""Decoded tiles on demand: memory LRU -> disk cache -> source, with failure bookkeeping.

:class:`TileProvider` is the one place that decides whether a tile may come from the network:
in offline mode, or without a source, it never calls one. Tiles that the source does not have
(404) are remembered for ``not_found_ttl_s`` and tiles that failed (timeout, 5xx, corrupt bytes)
for ``failure_ttl_s``, so a dead server costs one timeout per tile and period rather than one
per patch. Concurrent requests for the same tile (prefetch thread and localization thread)
share a single fetch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cvgl_ros.core.types import BoolArray, UInt8Array
from cvgl_ros.tiles.cache import TileCache
from cvgl_ros.tiles.config import CacheConfig
from cvgl_ros.tiles.errors import (
    CacheError,
    TileDecodeError,
    TileFetchError,
    TileNotFoundError,
)
from cvgl_ros.tiles.imaging import decode_tile_rgba
from cvgl_ros.tiles.sources import TileSource

log = logging.getLogger(__name__)

TileKey = tuple[int, int, int]
# Fetched tiles kept for a later store attempt when the database refused them.
_MAX_UNSTORED = 256
EnsureResult = Literal["cached", "fetched", "not_found", "failed", "offline"]


@dataclass(frozen=True)
class DecodedTile:
    """One decoded tile.

    Attributes:
        rgba: (S, S, 4) uint8, RGB north-up (row 0 at the tile's north edge) + validity alpha
            (255 where the tile holds imagery, 0 elsewhere).
    """

    rgba: UInt8Array

    @property
    def rgb(self) -> UInt8Array:
        """(S, S, 3) uint8 RGB view."""
        return self.rgba[:, :, :3]

    @property
    def valid(self) -> BoolArray:
        """(S, S) bool, True where the tile holds imagery."""
        return np.asarray(self.rgba[:, :, 3] == 255, dtype=np.bool_)


class TileProvider:
    """Tiles of one source, decoded, through the memory LRU and the disk cache."""

    def __init__(
        self,
        source: TileSource | None,
        cache: TileCache | None,
        offline: bool = False,
        cache_config: CacheConfig | None = None,
        *,
        source_id: str | None = None,
        tile_size_px: int | None = None,
        min_zoom: int | None = None,
        max_zoom: int | None = None,
        not_found_ttl_s: float = 3600.0,
        failure_ttl_s: float = 15.0,
    ) -> None:
        """Wire a source and a cache.

        Args:
            source: where missing tiles come from; ``None`` = cache only.
            cache: the disk cache; ``None`` for local sources (MBTiles) that need none.
            offline: never call the source's network (it is not even consulted).
            cache_config: provides ``memory_tiles`` (decoded tiles kept in memory).
            source_id: cache key; defaults to the source's id.
            tile_size_px: tile edge; defaults to the source's.
            min_zoom: lowest zoom; defaults to the source's (0 without a source).
            max_zoom: highest zoom; defaults to the source's (24 without a source).
            not_found_ttl_s: how long a 404 is remembered, seconds.
            failure_ttl_s: how long a failed fetch blocks a retry of that tile, seconds.
        """
        if source is None and cache is None:
            raise ValueError("a TileProvider needs a source, a cache, or both")
        if source is None and source_id is None:
            raise ValueError("source_id is required when there is no source")
        self.source = None if offline else source
        self.cache = cache
        self.offline = offline
        self.source_id: str = source_id or (source.source_id if source else "")
        self.tile_size_px: int = tile_size_px or (source.tile_size_px if source else 256)
        self.min_zoom: int = (
            min_zoom if min_zoom is not None else (source.min_zoom if source else 0)
        )
        self.max_zoom: int = (
            max_zoom if max_zoom is not None else (source.max_zoom if source else 24)
        )
        self._memory_size = (cache_config or CacheConfig()).memory_tiles
        self._memory: OrderedDict[TileKey, DecodedTile] = OrderedDict()
        self._negative: dict[TileKey, tuple[float, str]] = {}  # key -> (expiry, outcome)
        self._in_flight: dict[TileKey, threading.Event] = {}
        # Fetched tiles a locked/full database refused: stored again later (bounded).
        self._unstored: OrderedDict[TileKey, bytes] = OrderedDict()
        self._unstored_retry_s = 0.0
        self._not_found_ttl_s = not_found_ttl_s
        self._failure_ttl_s = failure_ttl_s
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {
            "memory_hits": 0,
            "cache_hits": 0,
            "cache_misses": 0,
            "fetches": 0,
            "fetched_bytes": 0,
            "fetch_errors": 0,
            "not_found": 0,
            "decode_errors": 0,
            "corrupt_in_cache": 0,
            "cache_errors": 0,
            "cache_write_errors": 0,
            "skipped_recent_failure": 0,
            "unavailable_offline": 0,
            "stored_later": 0,
        }

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    # -- memory LRU -------------------------------------------------------------------------------

    def _memory_get(self, key: TileKey) -> DecodedTile | None:
        with self._lock:
            tile = self._memory.get(key)
            if tile is not None:
                self._memory.move_to_end(key)
                self.counters["memory_hits"] += 1
            return tile

    def _memory_put(self, key: TileKey, tile: DecodedTile) -> None:
        if self._memory_size <= 0:
            return
        with self._lock:
            self._memory[key] = tile
            self._memory.move_to_end(key)
            while len(self._memory) > self._memory_size:
                self._memory.popitem(last=False)

    # -- public -----------------------------------------------------------------------------------

    def can_fetch(self) -> bool:
        """True when missing tiles may be fetched from the source."""
        return self.source is not None and not self.offline

    def get_tile(self, z: int, x: int, y: int, fetch: bool = True) -> DecodedTile | None:
        """The decoded tile z/x/y, or None when unavailable (reason counted).

        Args:
            z: zoom level.
            x: tile column.
            y: tile row (XYZ, from the north).
            fetch: allow a (blocking) fetch from the source on a cache miss.
        """
        key = (z, x, y)
        if self._unstored:
            self._retry_unstored()
        tile = self._memory_get(key)
        if tile is not None:
            return tile
        tile = self._from_cache(key)
        if tile is not None:
            self._memory_put(key, tile)
            return tile
        if not fetch or not self.can_fetch():
            if self.offline:
                self._count("unavailable_offline")
            return None
        _, _, tile = self._fetch_shared(key)
        if tile is not None:
            self._memory_put(key, tile)
        return tile

    def fetch_tile(self, z: int, x: int, y: int) -> DecodedTile | None:
        """Fetch tile z/x/y from the source (and store it), skipping the memory and disk
        lookups a caller has just done; None when unavailable (reason counted)."""
        if not self.can_fetch():
            if self.offline:
                self._count("unavailable_offline")
            return None
        key = (z, x, y)
        _, _, tile = self._fetch_shared(key)
        if tile is not None:
            self._memory_put(key, tile)
        return tile

    def ensure_cached(self, z: int, x: int, y: int) -> EnsureResult:
        """Make sure tile z/x/y is in the disk cache (the prefetch path; nothing decoded kept).

        Returns:
            ``cached`` (already there), ``fetched`` (downloaded and stored, or available from a
            local source), ``not_found`` (the source has none), ``failed`` (fetch or store
            failed), ``offline`` (missing and the network is off).
        """
        key = (z, x, y)
        if self.cache is not None:
            try:
                if self.cache.contains(self.source_id, z, x, y):
                    return "cached"
            except CacheError:
                self._count("cache_errors")
                return "failed"
        if not self.can_fetch():
            if self.offline:
                self._count("unavailable_offline")
            return "offline"
        data, outcome, _ = self._fetch_shared(key)
        if data is None:
            return "not_found" if outcome == "not_found" else "failed"
        if self.cache is not None and not self.cache.contains(self.source_id, z, x, y):
            return "failed"  # fetched but the store failed (counted in cache_write_errors)
        return "fetched"

    # -- internals --------------------------------------------------------------------------------

    def _from_cache(self, key: TileKey) -> DecodedTile | None:
        if self.cache is None:
            return None
        try:
            data = self.cache.get(self.source_id, *key)
        except CacheError as exc:
            self._count("cache_errors")
            log.warning("tile cache read failed: %s", exc)
            return None
        if data is None:
            self._count("cache_misses")
            return None
        try:
            rgba = decode_tile_rgba(data, self.tile_size_px)
        except TileDecodeError as exc:
            # Should never happen (tiles are validated before storing); heal the cache.
            self._count("corrupt_in_cache")
            log.warning("corrupt tile %s %s in cache, deleting: %s", self.source_id, key, exc)
            try:
                self.cache.delete(self.source_id, *key)
            except CacheError:
                self._count("cache_errors")
            return None
        self._count("cache_hits")
        return DecodedTile(rgba)

    def _fetch_shared(self, key: TileKey) -> tuple[bytes | None, str, DecodedTile | None]:
        """Fetch (and store) a tile; concurrent callers for one key share one fetch.

        Returns:
            (bytes, outcome, decoded tile); outcome ``ok`` (bytes and tile set), ``not_found``
            or ``failed`` (both None).
        """
        with self._lock:
            negative = self._negative.get(key)
            if negative is not None:
                if negative[0] > time.monotonic():
                    self.counters["skipped_recent_failure"] += 1
                    return None, negative[1], None
                del self._negative[key]
            event = self._in_flight.get(key)
            if event is None:
                mine = threading.Event()
                self._in_flight[key] = mine
        if event is not None:  # another thread is fetching this tile: wait for its result
            event.wait()
            with self._lock:
                negative = self._negative.get(key)
                shared = self._memory.get(key)
            if negative is not None:
                return None, negative[1], None
            if shared is not None:
                return b"", "ok", shared
            tile = self._from_cache(key)
            if tile is not None:
                return b"", "ok", tile
            return self._fetch_and_store(key)
        try:
            return self._fetch_and_store(key)
        finally:
            with self._lock:
                self._in_flight.pop(key, None)
            mine.set()

    def _remember_failure(self, key: TileKey, outcome: str) -> None:
        ttl = self._not_found_ttl_s if outcome == "not_found" else self._failure_ttl_s
        with self._lock:
            self._negative[key] = (time.monotonic() + ttl, outcome)

    def _fetch_and_store(self, key: TileKey) -> tuple[bytes | None, str, DecodedTile | None]:
        source = self.source
        if source is None:
            return None, "failed", None
        z, x, y = key
        self._count("fetches")
        try:
            data = source.fetch(z, x, y)
            rgba = decode_tile_rgba(data, self.tile_size_px)
        except TileNotFoundError:
            self._count("not_found")
            self._remember_failure(key, "not_found")
            return None, "not_found", None
        except TileDecodeError as exc:
            self._count("decode_errors")
            self._count("fetch_errors")
            log.warning("tile %s %d/%d/%d: %s", self.source_id, z, x, y, exc)
            self._remember_failure(key, "failed")
            return None, "failed", None
        except TileFetchError as exc:
            self._count("fetch_errors")
            log.warning("tile %s %d/%d/%d: %s", self.source_id, z, x, y, exc)
            self._remember_failure(key, "failed")
            return None, "failed", None
        self._count("fetched_bytes", len(data))
        if self.cache is not None:
            try:
                self.cache.put(self.source_id, z, x, y, data, self.tile_size_px, validated=True)
            except (CacheError, TileDecodeError) as exc:
                self._count("cache_write_errors")
                log.warning("tile %s %d/%d/%d not cached: %s", self.source_id, z, x, y, exc)
                if isinstance(exc, CacheError):
                    with self._lock:
                        self._unstored[key] = data
                        while len(self._unstored) > _MAX_UNSTORED:
                            self._unstored.popitem(last=False)
        return data, "ok", DecodedTile(rgba)

    def _retry_unstored(self) -> None:
        """Store tiles an earlier write could not (at most once a second; stops at a failure)."""
        now = time.monotonic()
        with self._lock:
            if self.cache is None or now < self._unstored_retry_s:
                return
            self._unstored_retry_s = now + 1.0
            items = list(self._unstored.items())
        for key, data in items:
            try:
                self.cache.put(self.source_id, *key, data, self.tile_size_px, validated=True)
            except CacheError:
                return  # still locked or full: try again later
            except TileDecodeError:
                pass
            with self._lock:
                self._unstored.pop(key, None)
                self.counters["stored_later"] += 1

    def stats(self) -> dict[str, int]:
        """Provider counters plus the cache's (``cache.*``) and the source's."""
        with self._lock:
            out: dict[str, int] = dict(self.counters)
            out["memory_tiles"] = len(self._memory)
        if self.cache is not None:
            for k, v in self.cache.stats().items():
                out[f"cache.{k}"] = v
        if self.source is not None:
            out.update(self.source.stats())
        return out

    def close(self) -> None:
        """Close the source and the cache."""
        if self.source is not None:
            self.source.close()
        if self.cache is not None:
            self.cache.close()
