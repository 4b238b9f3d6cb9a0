"""TileCache: validation before storing, MBTiles layout, size bound + LRU, errors, threads."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cvgl_ros.tiles import CacheConfig, CacheError, CacheFullError, TileDecodeError
from cvgl_ros.tiles.cache import TileCache
from cvgl_ros.tiles.imaging import check_complete, decode_tile, encode_tile


def _tile(seed: int, fmt: str = "png", size: int = 256) -> bytes:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return encode_tile(rgb, None, fmt)


@pytest.fixture
def cache(tmp_path: Path) -> TileCache:
    c = TileCache(tmp_path / "c.mbtiles")
    yield c
    c.close()


class TestValidation:
    @pytest.mark.parametrize("fmt", ["png", "jpg"])
    def test_truncated_images_are_rejected(self, cache: TileCache, fmt: str) -> None:
        data = _tile(1, fmt)
        for cut in (len(data) // 2, len(data) - 3):
            with pytest.raises(TileDecodeError, match="truncated"):
                cache.put("s", 3, 1, 2, data[:cut])
        assert cache.tile_count() == 0 and cache.stats()["rejected_invalid"] == 2

    @pytest.mark.parametrize(
        "body",
        [b"<html><body>Rate limit exceeded</body></html>", b'{"error": "quota"}', b"", b"GIF8"],
    )
    def test_error_pages_are_rejected(self, cache: TileCache, body: bytes) -> None:
        with pytest.raises(TileDecodeError):
            cache.put("s", 3, 1, 2, body)
        assert cache.get("s", 3, 1, 2) is None

    def test_wrong_tile_size_is_rejected(self, cache: TileCache) -> None:
        with pytest.raises(TileDecodeError, match="expected 256"):
            cache.put("s", 3, 1, 2, _tile(1, size=128), expected_size_px=256)

    def test_png_alpha_becomes_the_valid_mask(self) -> None:
        rgb = np.full((256, 256, 3), 90, np.uint8)
        valid = np.zeros((256, 256), bool)
        valid[:, :100] = True
        out_rgb, out_valid = decode_tile(encode_tile(rgb, valid, "png"), 256)
        assert np.array_equal(out_valid, valid) and np.array_equal(out_rgb, rgb)
        assert check_complete(encode_tile(rgb, None, "jpg")) == "jpg"


class TestStore:
    def test_round_trip_and_counters(self, cache: TileCache) -> None:
        data = _tile(2)
        assert cache.get("s", 18, 100, 200) is None
        cache.put("s", 18, 100, 200, data)
        assert cache.get("s", 18, 100, 200) == data
        assert cache.get("other", 18, 100, 200) is None  # keyed by source id
        st = cache.stats()
        assert (st["hits"], st["misses"], st["puts"]) == (1, 2, 1)
        assert st["bytes_read"] == st["bytes_written"] == st["size_bytes"] == len(data)
        assert list(cache.tile_keys()) == [("s", 18, 100, 200)]

    def test_replace_keeps_size_consistent(self, cache: TileCache) -> None:
        a, b = _tile(3), _tile(4, "jpg")
        cache.put("s", 5, 1, 1, a)
        cache.put("s", 5, 1, 1, b)
        assert cache.get("s", 5, 1, 1) == b
        assert cache.size_bytes() == len(b) and cache.tile_count() == 1

    def test_mbtiles_layout_uses_tms_rows(self, cache: TileCache, tmp_path: Path) -> None:
        data = _tile(5)
        cache.put("s", 3, 2, 1, data)
        con = sqlite3.connect(tmp_path / "c.mbtiles")
        rows = con.execute("SELECT zoom_level, tile_column, tile_row FROM tiles").fetchall()
        meta = dict(con.execute("SELECT name, value FROM metadata").fetchall())
        con.close()
        assert rows == [(3, 2, 6)]  # y=1 at z3 is TMS row 2^3 - 1 - 1
        assert meta["cvgl_ros_source_id"] == "s" and meta["format"] == "png"

    def test_reopen_keeps_tiles(self, tmp_path: Path) -> None:
        with TileCache(tmp_path / "c.mbtiles") as c:
            c.put("s", 1, 0, 0, _tile(6))
        with TileCache(tmp_path / "c.mbtiles") as c:
            assert c.tile_count() == 1 and c.verify() == (1, [])

    def test_not_a_database(self, tmp_path: Path) -> None:
        (tmp_path / "junk.mbtiles").write_bytes(b"this is not sqlite" * 100)
        from cvgl_ros.tiles import CacheError

        with pytest.raises(CacheError):
            TileCache(tmp_path / "junk.mbtiles")


class TestEviction:
    def test_size_bound_and_lru_order(self, tmp_path: Path) -> None:
        tiles = [_tile(10 + i) for i in range(10)]
        bound = sum(len(t) for t in tiles[:5])
        c = TileCache(
            tmp_path / "c.mbtiles",
            CacheConfig(max_size_bytes=bound, evict_to_fraction=1.0, touch_flush_interval_s=0.0),
        )
        for i, t in enumerate(tiles[:5]):
            c.put("s", 10, i, 0, t)
        assert c.stats()["evicted_tiles"] == 0  # exactly at the bound
        assert c.get("s", 10, 0, 0) is not None  # tile 0 becomes the most recent
        c.put("s", 10, 5, 0, tiles[5])
        assert c.contains("s", 10, 0, 0) and c.contains("s", 10, 5, 0)
        assert not c.contains("s", 10, 1, 0)  # least recently used went first
        for i, t in enumerate(tiles[6:], start=6):
            c.put("s", 10, i, 0, t)
            assert c.size_bytes() <= bound
        assert c.stats()["evicted_tiles"] >= 4
        c.close()

    def test_explicit_evict(self, cache: TileCache) -> None:
        for i in range(5):
            cache.put("s", 10, i, 0, _tile(20 + i))
        assert cache.evict(max_size_bytes=1) == 5 and cache.size_bytes() == 0


class TestFailures:
    def test_full_database(self, cache: TileCache) -> None:
        cache.put("s", 1, 0, 0, _tile(30))
        conn = cache._conn()  # SQLITE_FULL for real: no page may be added
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(CacheFullError):
            cache.put("s", 1, 0, 1, _tile(31))
        st = cache.stats()
        assert st["full_errors"] == 1 and st["write_errors"] == 1 and st["tiles"] == 1
        assert cache.verify() == (1, [])

    def test_threads_write_and_read_concurrently(self, cache: TileCache) -> None:
        data = [_tile(40 + i, "jpg") for i in range(4)]
        errors: list[BaseException] = []

        def work(k: int) -> None:
            try:
                for i in range(20):
                    cache.put("s", 12, k, i, data[k])
                    assert cache.get("s", 12, k, i) == data[k]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert cache.verify() == (80, [])
        assert cache.size_bytes() == 20 * sum(len(d) for d in data)


def test_cache_config_validation() -> None:
    with pytest.raises(ValueError, match="max_size_bytes"):
        CacheConfig(max_size_bytes=0)
    with pytest.raises(ValueError, match="synchronous"):
        CacheConfig(synchronous="OFF")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- read-only caches

_OFFLINE_PROBE = """
import sys
from cvgl_ros.tiles import PatchConfig, build_patch_source
from cvgl_ros.tiles.config import TileSourceConfig

src = TileSourceConfig(source="http://127.0.0.1:9/{z}/{x}/{y}.png", source_id="src")
ps = build_patch_source(
    src, sys.argv[1], PatchConfig(patch_size_px=128, patch_m_per_px=1.0), offline=True
)
patch = ps.patch_at(47.0, 8.0)
print(ps.provider.cache.open_mode, float(patch.valid_mask.mean()))
ps.close()
"""


def _prefilled(path: Path) -> Path:
    """A cache holding the zoom-17 tiles within 150 m of (47, 8), closed cleanly."""
    from cvgl_ros.tiles.geo import tiles_in_radius

    with TileCache(path) as c:
        for i, (z, x, y) in enumerate(tiles_in_radius(47.0, 8.0, 150.0, 17)):
            c.put("src", z, x, y, _tile(i))
    return path


class TestReadOnly:
    def test_offline_opens_an_unwritable_cache_read_only(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from cvgl_ros.tiles import PatchConfig, build_patch_source
        from cvgl_ros.tiles import cache as cache_module
        from cvgl_ros.tiles.config import TileSourceConfig

        path = _prefilled(tmp_path / "c.mbtiles")
        before = path.read_bytes()
        src = TileSourceConfig(source="http://127.0.0.1:9/{z}/{x}/{y}.png", source_id="src")
        cfg = PatchConfig(patch_size_px=128, patch_m_per_px=1.0)
        # Tests run as root, for whom permission bits never stop a write: stand in for a
        # read-only file (the real mount is the next test).
        monkeypatch.setattr(cache_module, "is_writable", lambda p: False)
        ps = build_patch_source(src, path, cfg, offline=True)
        try:
            assert ps.provider.cache.open_mode == "read_only"
            assert ps.patch_at(47.0, 8.0).valid_mask.mean() == 1.0
            with pytest.raises(CacheError, match="read-only"):
                ps.provider.cache.put("src", 17, 1, 1, _tile(0))
        finally:
            ps.close()
        assert path.read_bytes() == before  # no access time, no eviction, no schema write
        online = build_patch_source(src, path, cfg, offline=False)  # online: read-write
        try:
            assert online.provider.cache.open_mode == "read_write"
        finally:
            online.close()

    def test_read_only_mount_is_usable_offline(self, tmp_path: Path) -> None:
        """A real read-only bind mount (which stops root too), in a private mount namespace."""
        if shutil.which("unshare") is None or shutil.which("mount") is None:
            pytest.skip("unshare/mount not available: cannot make a read-only mount")
        folder = tmp_path / "ro"
        folder.mkdir()
        _prefilled(folder / "tiles.mbtiles")
        script = tmp_path / "probe.py"
        script.write_text(_OFFLINE_PROBE)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        mount = f"mount --bind -o ro {folder} {folder}"
        proc = subprocess.run(
            [
                *("unshare", "-m", "sh", "-c", f'{mount} && exec "$0" "$@"', sys.executable),
                *(str(script), str(folder / "tiles.mbtiles")),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        refused = "mount" in proc.stderr or "unshare" in proc.stderr
        if proc.returncode != 0 and refused and "Traceback" not in proc.stderr:
            pytest.skip(f"no private read-only mount here: {proc.stderr.strip()[:200]}")
        assert proc.returncode == 0, proc.stderr
        mode, valid = proc.stdout.split()
        assert mode in ("read_only", "immutable") and float(valid) == 1.0
        assert sorted(p.name for p in folder.iterdir()) == ["tiles.mbtiles"]  # no WAL files

    def test_read_only_cache_must_exist_and_be_ours(self, tmp_path: Path) -> None:
        with pytest.raises(CacheError, match="does not exist"):
            TileCache(tmp_path / "missing.mbtiles", read_only=True)
        empty = tmp_path / "empty.mbtiles"
        sqlite3.connect(empty).close()
        empty.write_bytes(b"")
        with pytest.raises(CacheError):
            TileCache(empty, read_only=True)


def test_a_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "someone_elses.mbtiles"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data)")
    conn.execute("CREATE TABLE metadata (name, value)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(CacheError, match="not a cvgl_ros tile cache"):
        TileCache(path)
    assert path.read_bytes() == before
