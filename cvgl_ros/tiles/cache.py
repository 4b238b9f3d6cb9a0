"""The durable on-disk tile cache: one SQLite file, MBTiles-compatible.

Layout: table ``tile_store`` keyed by (source_id, zoom_level, tile_column, tile_row) with the
row in the TMS convention of MBTiles, each tile's size and last access time; ``metadata`` (the
MBTiles name/value table); and a view ``tiles`` exposing the tiles of one source (the first one
stored, recorded as metadata ``cvgl_ros_source_id``) so that GDAL/QGIS open the file as an
ordinary MBTiles tileset. Triggers keep the total size in ``store_size`` inside the same
transaction as each change, so the size bound never needs a table scan.

Durability and concurrency: WAL journal; each write is one ``BEGIN IMMEDIATE`` transaction
(a crash mid-write leaves the previous state); tiles are decoded before they are stored, so a
truncated download or an HTML error page never enters. Readers never block on the writer (WAL);
writers from several threads or processes queue on SQLite's lock for up to ``busy_timeout_s``.
Each thread has its own connection.

LRU: reads record their access time in memory and flush it in batches (at most every
``touch_flush_interval_s``, piggy-backed on writes), so a read never takes the write lock.

Read-only use: a pre-filled cache on a read-only mount or without write permission opens with
``read_only=True`` (the node does so in offline mode when it cannot write the file or its
directory): SQLite's ``mode=ro``, or ``immutable=1`` when even that needs a write (WAL index
files that cannot be created); no access time is recorded and nothing is evicted. A file that
is an SQLite database but not a cvgl_ros tile cache (another program's MBTiles) is refused,
never modified.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from cvgl_ros.tiles.config import CacheConfig
from cvgl_ros.tiles.errors import (
    CacheError,
    CacheFullError,
    CacheLockedError,
    TileDecodeError,
)
from cvgl_ros.tiles.imaging import decode_tile, image_format

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS metadata (name TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS tile_store (
    source_id TEXT NOT NULL,
    zoom_level INTEGER NOT NULL,
    tile_column INTEGER NOT NULL,
    tile_row INTEGER NOT NULL,
    tile_data BLOB NOT NULL,
    size_bytes INTEGER NOT NULL,
    format TEXT NOT NULL,
    fetched_s REAL NOT NULL,
    accessed_s REAL NOT NULL,
    UNIQUE (source_id, zoom_level, tile_column, tile_row)
);
CREATE INDEX IF NOT EXISTS tile_store_lru ON tile_store (accessed_s);
CREATE TABLE IF NOT EXISTS store_size (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    bytes INTEGER NOT NULL,
    tiles INTEGER NOT NULL
);
INSERT OR IGNORE INTO store_size (id, bytes, tiles) VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS tile_store_after_insert AFTER INSERT ON tile_store BEGIN
    UPDATE store_size SET bytes = bytes + NEW.size_bytes, tiles = tiles + 1 WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS tile_store_after_delete AFTER DELETE ON tile_store BEGIN
    UPDATE store_size SET bytes = bytes - OLD.size_bytes, tiles = tiles - 1 WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS tile_store_after_update AFTER UPDATE OF size_bytes ON tile_store
BEGIN
    UPDATE store_size SET bytes = bytes + NEW.size_bytes - OLD.size_bytes WHERE id = 0;
END;
CREATE VIEW IF NOT EXISTS tiles AS
    SELECT zoom_level, tile_column, tile_row, tile_data FROM tile_store
    WHERE source_id = (SELECT value FROM metadata WHERE name = 'cvgl_ros_source_id');
"""

TileKey = tuple[str, int, int, int]


def _tms_row(z: int, y: int) -> int:
    return (1 << z) - 1 - y


def _classify(exc: sqlite3.Error, what: str) -> CacheError:
    msg = str(exc).lower()
    if "full" in msg:
        return CacheFullError(f"tile cache full while {what}: {exc}")
    if "locked" in msg or "busy" in msg:
        return CacheLockedError(f"tile cache locked while {what}: {exc}")
    return CacheError(f"tile cache error while {what}: {exc}")


@contextlib.contextmanager
def _immediate_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back when the body or the commit raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def is_writable(path: str | Path) -> bool:
    """True when this process may write the cache file and create its WAL files beside it.

    ``os.access`` also reports read-only mounts for root (EROFS), where permission bits do not
    apply.
    """
    p = Path(path).expanduser()
    parent = p.parent if p.parent.exists() else next(a for a in p.parents if a.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        return False
    return not p.exists() or os.access(p, os.W_OK)


class TileCache:
    """MBTiles-compatible SQLite tile store with a size bound and LRU eviction.

    Thread-safe and multi-process safe (one connection per thread, WAL, busy timeout).

    Attributes:
        open_mode: ``read_write``, ``read_only`` (SQLite ``mode=ro``) or ``immutable``
            (``mode=ro&immutable=1``: the file is assumed not to change while open).
    """

    def __init__(
        self, path: str | Path, config: CacheConfig | None = None, read_only: bool = False
    ) -> None:
        """Open (creating if needed, unless ``read_only``) the cache database.

        Args:
            path: the database file.
            config: size bound and tuning.
            read_only: open an existing cache without ever writing to it (a pre-filled cache
                on a read-only mount); :meth:`put`, :meth:`delete` and :meth:`evict` then
                raise :class:`CacheError`.

        Raises:
            CacheError: the file cannot be opened, is not a cvgl_ros tile cache, or (with
                ``read_only``) does not exist.
        """
        self.path = Path(path).expanduser()
        self.config = config or CacheConfig()
        self.read_only = read_only
        self.open_mode = "read_only" if read_only else "read_write"
        if read_only and not self.path.is_file():
            raise CacheError(f"read-only tile cache {self.path} does not exist")
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError(
                    f"cannot create the cache directory {self.path.parent}: {exc}"
                ) from exc
        self._local = threading.local()
        self._all_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one writer per process; SQLite orders processes
        self._pending_touch: dict[TileKey, float] = {}
        self._last_flush_s = time.monotonic()
        self._closed = False
        self.counters: dict[str, int] = {
            "hits": 0,
            "misses": 0,
            "bytes_read": 0,
            "puts": 0,
            "bytes_written": 0,
            "rejected_invalid": 0,
            "write_errors": 0,
            "locked_errors": 0,
            "full_errors": 0,
            "evicted_tiles": 0,
            "evicted_bytes": 0,
        }
        if read_only:
            self._open_read_only()
            return
        self._refuse_foreign()
        conn = self._conn()
        script = (
            "BEGIN IMMEDIATE;\n"
            + _SCHEMA
            + "INSERT OR IGNORE INTO metadata (name, value) VALUES "
            + f"('cvgl_ros_schema', '{SCHEMA_VERSION}'), ('name', 'cvgl_ros tile cache'), "
            + "('type', 'baselayer'), ('version', '1.3'), ('format', 'png');\n"
            + "COMMIT;\n"
        )
        try:
            with self._write_lock:
                if not self._has_schema(conn):
                    conn.executescript(script)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _classify(exc, f"opening {self.path}") from exc

    def _open_read_only(self) -> None:
        """Open with ``mode=ro``, else ``immutable=1``; the schema must be there."""
        try:
            if self._has_schema(self._conn()):
                return
        except sqlite3.Error as exc:  # WAL index files that cannot be created (read-only dir)
            log.info("tile cache %s: mode=ro failed (%s), opening immutable", self.path, exc)
            self._drop_connection()
            self.open_mode = "immutable"
            try:
                if self._has_schema(self._conn()):
                    return
            except sqlite3.Error as exc2:
                raise _classify(exc2, f"opening {self.path} read-only") from exc2
        raise CacheError(f"{self.path} is not a cvgl_ros tile cache (no cvgl_ros_schema)")

    def _drop_connection(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            return
        with self._lock:
            self._all_conns.remove(conn)
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        self._local.conn = None

    def _refuse_foreign(self) -> None:
        """Raise when the file exists but is not a cvgl_ros tile cache, before any write.

        Opening read-write would already switch another program's database to WAL, and
        creating our schema inside someone else's MBTiles would alter their file; so an
        existing file is first looked at through a read-only connection.
        """
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                if self._has_schema(conn):
                    return
                names = [
                    str(row[0])
                    for row in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                        "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                    )
                ]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise _classify(exc, f"opening {self.path}") from exc
        if names:
            raise CacheError(
                f"{self.path} is an SQLite database but not a cvgl_ros tile cache (it holds "
                f"{', '.join(names[:6])}); point the tile cache at a new file"
            )

    def _check_writable(self, what: str) -> None:
        if self.read_only:
            raise CacheError(f"tile cache {self.path} is open read-only: cannot {what}")

    @staticmethod
    def _has_schema(conn: sqlite3.Connection) -> bool:
        """True when the file already holds our schema (opening then needs no write lock)."""
        try:
            row = conn.execute(
                "SELECT value FROM metadata WHERE name = 'cvgl_ros_schema'"
            ).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return False
            raise
        if row is None:
            return False
        if str(row[0]) != SCHEMA_VERSION:
            raise CacheError(f"tile cache schema {row[0]} is not the supported {SCHEMA_VERSION}")
        return True

    # -- connections ----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise CacheError(f"tile cache {self.path} is closed")
        try:
            if self.read_only:
                query = "mode=ro&immutable=1" if self.open_mode == "immutable" else "mode=ro"
                conn = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?{query}",
                    uri=True,
                    timeout=self.config.busy_timeout_s,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(
                    str(self.path),
                    timeout=self.config.busy_timeout_s,
                    isolation_level=None,  # autocommit; transactions are explicit
                    check_same_thread=False,
                )
            conn.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout_s * 1000)}")
            if not self.read_only:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    log.warning("tile cache %s: journal_mode is %s, not WAL", self.path, mode)
                conn.execute(f"PRAGMA synchronous = {self.config.synchronous}")
        except sqlite3.Error as exc:
            if self.read_only:
                raise  # _open_read_only tries immutable next
            if "readonly" in str(exc).lower() or "read-only" in str(exc).lower():
                raise CacheError(
                    f"tile cache {self.path} is read-only ({exc}); use offline mode to read a "
                    "pre-filled cache without writing"
                ) from exc
            raise _classify(exc, f"opening {self.path}") from exc
        self._local.conn = conn
        with self._lock:
            self._all_conns.append(conn)
        return conn

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    # -- reads ----------------------------------------------------------------------------------

    def get(self, source_id: str, z: int, x: int, y: int) -> bytes | None:
        """The stored bytes of a tile, or None (counted as a hit or a miss).

        Raises:
            CacheError: the database cannot be read.
        """
        row = self._select_tile("tile_data", source_id, z, x, y)
        if row is None:
            self._count("misses")
            return None
        data = bytes(row[0])
        with self._lock:
            self.counters["hits"] += 1
            self.counters["bytes_read"] += len(data)
            if not self.read_only:
                self._pending_touch[(source_id, z, x, y)] = time.time()
        if not self.read_only:
            self._maybe_flush_touches()
        return data

    def contains(self, source_id: str, z: int, x: int, y: int) -> bool:
        """True when the tile is stored (no counters, no access-time update)."""
        return self._select_tile("1", source_id, z, x, y) is not None

    def _select_tile(
        self, column: Literal["tile_data", "1"], source_id: str, z: int, x: int, y: int
    ) -> Any:
        """``SELECT column`` of one stored tile: the row, or None when it is not stored.

        Raises:
            CacheError: the database cannot be read.
        """
        try:
            return (
                self._conn()
                .execute(
                    f"SELECT {column} FROM tile_store WHERE source_id = ? AND zoom_level = ? "
                    "AND tile_column = ? AND tile_row = ?",
                    (source_id, z, x, _tms_row(z, y)),
                )
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise _classify(exc, "reading a tile") from exc

    def size_bytes(self) -> int:
        """Total stored tile bytes (all sources)."""
        return int(self._conn().execute("SELECT bytes FROM store_size WHERE id = 0").fetchone()[0])

    def tile_count(self, source_id: str | None = None) -> int:
        """Number of stored tiles (of one source, or all)."""
        if source_id is None:
            return int(
                self._conn().execute("SELECT tiles FROM store_size WHERE id = 0").fetchone()[0]
            )
        return int(
            self._conn()
            .execute("SELECT COUNT(*) FROM tile_store WHERE source_id = ?", (source_id,))
            .fetchone()[0]
        )

    def tile_keys(self, source_id: str | None = None) -> Iterator[TileKey]:
        """(source_id, z, x, y) of every stored tile (y in XYZ convention)."""
        sql = "SELECT source_id, zoom_level, tile_column, tile_row FROM tile_store"
        args: tuple[Any, ...] = ()
        if source_id is not None:
            sql += " WHERE source_id = ?"
            args = (source_id,)
        for sid, z, x, row in self._conn().execute(sql, args).fetchall():
            yield (str(sid), int(z), int(x), _tms_row(int(z), int(row)))

    def metadata(self) -> dict[str, str]:
        """The MBTiles ``metadata`` table."""
        rows = self._conn().execute("SELECT name, value FROM metadata").fetchall()
        return {str(k): str(v) for k, v in rows}

    # -- writes ---------------------------------------------------------------------------------

    def put(
        self,
        source_id: str,
        z: int,
        x: int,
        y: int,
        data: bytes,
        expected_size_px: int | None = None,
        validated: bool = False,
    ) -> None:
        """Validate and store a tile atomically (replacing an older copy), then evict if needed.

        Args:
            source_id: cache key of the source.
            z: zoom level.
            x: tile column.
            y: tile row (XYZ, from the north; stored as the TMS row).
            data: encoded image bytes.
            expected_size_px: reject tiles of another size.
            validated: the caller has just decoded exactly these bytes (skips a second decode).

        Raises:
            TileDecodeError: the bytes are not a complete image (nothing is stored).
            CacheFullError: the disk or the database page limit is full.
            CacheLockedError: another writer held the lock past the busy timeout.
            CacheError: any other database failure, or a read-only cache.
        """
        self._check_writable("store tiles")
        try:
            if not validated:
                decode_tile(data, expected_size_px)
            fmt = image_format(data)
        except TileDecodeError:
            self._count("rejected_invalid")
            raise
        now = time.time()
        try:
            with self._write_lock:
                conn = self._conn()
                with _immediate_transaction(conn):
                    conn.execute(
                        "INSERT INTO tile_store (source_id, zoom_level, tile_column, tile_row, "
                        "tile_data, size_bytes, format, fetched_s, accessed_s) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (source_id, zoom_level, tile_column, tile_row) DO UPDATE SET "
                        "tile_data = excluded.tile_data, size_bytes = excluded.size_bytes, "
                        "format = excluded.format, fetched_s = excluded.fetched_s, "
                        "accessed_s = excluded.accessed_s",
                        (source_id, z, x, _tms_row(z, y), data, len(data), fmt, now, now),
                    )
                    conn.execute(
                        "INSERT OR IGNORE INTO metadata (name, value) "
                        "VALUES ('cvgl_ros_source_id', ?)",
                        (source_id,),
                    )
                    self._flush_touches_locked(conn)
                    self._evict_locked(conn, self.config.max_size_bytes)
        except sqlite3.Error as exc:
            err = _classify(exc, f"storing tile {source_id} {z}/{x}/{y}")
            self._count("write_errors")
            if isinstance(err, CacheFullError):
                self._count("full_errors")
            elif isinstance(err, CacheLockedError):
                self._count("locked_errors")
            log.warning("%s", err)
            raise err from exc
        with self._lock:
            self.counters["puts"] += 1
            self.counters["bytes_written"] += len(data)

    def delete(self, source_id: str, z: int, x: int, y: int) -> bool:
        """Remove one tile; True when it existed."""
        self._check_writable("delete tiles")
        try:
            with self._write_lock:
                conn = self._conn()
                cur = conn.execute(
                    "DELETE FROM tile_store WHERE source_id = ? AND zoom_level = ? "
                    "AND tile_column = ? AND tile_row = ?",
                    (source_id, z, x, _tms_row(z, y)),
                )
                return cur.rowcount > 0
        except sqlite3.Error as exc:
            raise _classify(exc, "deleting a tile") from exc

    def evict(self, max_size_bytes: int | None = None) -> int:
        """Evict least-recently-used tiles down to the bound; returns tiles evicted."""
        self._check_writable("evict tiles")
        before = self.counters["evicted_tiles"]
        try:
            with self._write_lock:
                conn = self._conn()
                with _immediate_transaction(conn):
                    self._flush_touches_locked(conn)
                    self._evict_locked(conn, max_size_bytes or self.config.max_size_bytes)
        except sqlite3.Error as exc:
            raise _classify(exc, "evicting tiles") from exc
        return self.counters["evicted_tiles"] - before

    def _evict_locked(self, conn: sqlite3.Connection, bound: int) -> None:
        total = int(conn.execute("SELECT bytes FROM store_size WHERE id = 0").fetchone()[0])
        if total <= bound:
            return
        target = int(bound * self.config.evict_to_fraction)
        freed = 0
        victims: list[int] = []
        for rowid, size in conn.execute(
            "SELECT rowid, size_bytes FROM tile_store ORDER BY accessed_s ASC"
        ):
            victims.append(int(rowid))
            freed += int(size)
            if total - freed <= target:
                break
        for i in range(0, len(victims), 500):
            chunk = victims[i : i + 500]
            conn.execute(
                f"DELETE FROM tile_store WHERE rowid IN ({','.join('?' * len(chunk))})", chunk
            )
        with self._lock:
            self.counters["evicted_tiles"] += len(victims)
            self.counters["evicted_bytes"] += freed
        log.info(
            "tile cache: evicted %d tiles (%d bytes) to stay under %d", len(victims), freed, bound
        )

    def _flush_touches_locked(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            pending, self._pending_touch = self._pending_touch, {}
            self._last_flush_s = time.monotonic()
        if pending:
            conn.executemany(
                "UPDATE tile_store SET accessed_s = MAX(accessed_s, ?) WHERE source_id = ? "
                "AND zoom_level = ? AND tile_column = ? AND tile_row = ?",
                [(t, s, z, x, _tms_row(z, y)) for (s, z, x, y), t in pending.items()],
            )

    def _maybe_flush_touches(self) -> None:
        """Flush access times if due, without waiting for another writer (reads never block)."""
        with self._lock:
            due = (
                bool(self._pending_touch)
                and time.monotonic() - self._last_flush_s >= self.config.touch_flush_interval_s
            )
        if due:
            self.flush(block=False)

    def flush(self, block: bool = True) -> bool:
        """Write pending access times; returns False when the lock was busy (non-blocking)."""
        if self.read_only:
            return True  # nothing is ever pending
        if not self._write_lock.acquire(blocking=block):
            return False
        conn = self._conn()
        try:
            if not block:
                conn.execute("PRAGMA busy_timeout = 0")
            with _immediate_transaction(conn):
                self._flush_touches_locked(conn)
            return True
        except sqlite3.Error as exc:
            log.debug("tile cache: access-time flush deferred: %s", exc)
            return False
        finally:
            if not block:
                conn.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout_s * 1000)}")
            self._write_lock.release()

    # -- maintenance ------------------------------------------------------------------------------

    def verify(self, decode: bool = True) -> tuple[int, list[TileKey]]:
        """Check the database and every tile.

        Returns:
            (tiles checked, keys of tiles that fail to decode).

        Raises:
            CacheError: SQLite's integrity check fails.
        """
        conn = self._conn()
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise CacheError(f"tile cache {self.path} failed its integrity check: {result}")
        bad: list[TileKey] = []
        n = 0
        for sid, z, x, row, data in conn.execute(
            "SELECT source_id, zoom_level, tile_column, tile_row, tile_data FROM tile_store"
        ):
            n += 1
            if decode:
                try:
                    decode_tile(bytes(data))
                except TileDecodeError:
                    bad.append((str(sid), int(z), int(x), _tms_row(int(z), int(row))))
        return n, bad

    def stats(self) -> dict[str, int]:
        """Counters (this process) plus the stored size and tile count (all processes)."""
        with self._lock:
            out = dict(self.counters)
        try:
            out["size_bytes"] = self.size_bytes()
            out["tiles"] = self.tile_count()
        except sqlite3.Error:
            pass
        return out

    def close(self) -> None:
        """Flush access times and close every connection of this object."""
        if self._closed:
            return
        with contextlib.suppress(CacheError):
            self.flush(block=True)
        self._closed = True
        with self._lock:
            conns, self._all_conns = self._all_conns, []
        for c in conns:
            with contextlib.suppress(sqlite3.Error):
                c.close()
        self._local = threading.local()

    def __enter__(self) -> TileCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def missing_tiles(
    cache: TileCache, source_id: str, tiles: Iterable[tuple[int, int, int]]
) -> list[tuple[int, int, int]]:
    """The subset of (z, x, y) tiles not stored for ``source_id``, order kept."""
    return [t for t in tiles if not cache.contains(source_id, *t)]
