"""Typed errors of the tile subsystem.

``NoImageryError`` (from the core) is what the localizer understands; the tile-specific errors
below say *why* a tile or a patch is unavailable so that counters and logs can be precise.
"""

from __future__ import annotations

from cvgl_ros.core.errors import NoImageryError


class TilesError(Exception):
    """Base class of the tile subsystem's errors."""


class TileNotFoundError(TilesError):
    """The source has no tile at this z/x/y (HTTP 404/204, outside its extent or zoom range)."""


class TileFetchError(TilesError):
    """A tile could not be fetched (unreachable server, timeout, HTTP error after retries).

    Attributes:
        status_code: the last HTTP status, or ``None`` when no response arrived.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class OfflineError(TileFetchError):
    """Offline mode is on: the tile is not cached and the network may not be used."""


class TileDecodeError(TilesError):
    """Bytes are not a complete, decodable image (truncated JPEG/PNG, an HTML error page)."""


class CacheError(TilesError):
    """The on-disk tile cache failed (I/O error, corrupt database)."""


class CacheFullError(CacheError):
    """The disk (or the database's page limit) is full; the tile was not stored."""


class CacheLockedError(CacheError):
    """Another writer held the database lock past the busy timeout."""


class OutsideTileGridError(NoImageryError):
    """The point lies outside the Web Mercator tile grid (|latitude| > 85.0511 degrees)."""


__all__ = [
    "CacheError",
    "CacheFullError",
    "CacheLockedError",
    "NoImageryError",
    "OfflineError",
    "OutsideTileGridError",
    "TileDecodeError",
    "TileFetchError",
    "TileNotFoundError",
    "TilesError",
]
