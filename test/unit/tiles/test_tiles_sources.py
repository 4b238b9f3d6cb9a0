"""Source configs, URL templates, WMS parameters, rate limiter, Retry-After, MBTiles reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import mercantile
import numpy as np
import pytest

from cvgl_ros.tiles import TileNotFoundError, TileSourceConfig
from cvgl_ros.tiles.config import source_kind
from cvgl_ros.tiles.http import RateLimiter, parse_retry_after_s
from cvgl_ros.tiles.imaging import encode_tile
from cvgl_ros.tiles.sources import HttpTileSource, MBTilesTileSource, WmsTileSource


class TestConfig:
    @pytest.mark.parametrize(
        "source,kind",
        [
            ("https://{s}.tiles.example/{z}/{x}/{y}.jpg", "xyz"),
            ("https://t.example/tiles?q={q}", "xyz"),
            ("http://h/tms/{z}/{x}/{-y}.png", "xyz"),
            ("wms:https://geo.example/wms", "wms"),
            ("/data/area.mbtiles", "mbtiles"),
            ("/data/ortho.TIF", "geotiff"),
        ],
    )
    def test_source_kinds(self, source: str, kind: str) -> None:
        assert source_kind(source) == kind

    @pytest.mark.parametrize(
        "kwargs,field",
        [
            ({"source": "https://h/{z}/{x}.png"}, "placeholders"),
            ({"source": "ftp://h/x"}, "unknown tile source"),
            ({"source": "wms:http://h/wms"}, "wms_layers"),
            ({"source": "http://h/{z}/{x}/{y}", "max_requests_per_s": 0}, "max_requests_per_s"),
            ({"source": "http://h/{z}/{x}/{y}", "max_concurrent_requests": 0}, "max_concurrent"),
            ({"source": "http://h/{z}/{x}/{y}", "tile_size_px": 300}, "tile_size_px"),
            ({"source": "http://h/{z}/{x}/{y}", "min_zoom": 5, "max_zoom": 3}, "max_zoom"),
            ({"source": "http://h/{z}/{x}/{y}", "source_id": "a b"}, "source_id"),
        ],
    )
    def test_invalid_configs_name_the_field(self, kwargs: dict, field: str) -> None:
        with pytest.raises(ValueError, match=field):
            TileSourceConfig(**kwargs)

    def test_headers_from_mapping_or_ros_strings(self) -> None:
        a = TileSourceConfig(source="http://h/{z}/{x}/{y}", headers={"X-Key": "k"})  # type: ignore[arg-type]
        b = TileSourceConfig(source="http://h/{z}/{x}/{y}", headers=("X-Key: k",))  # type: ignore[arg-type]
        assert a.headers == b.headers == (("X-Key", "k"),)
        assert a.source_id == b.source_id  # derived from the URL: stable


class TestUrls:
    def test_xyz_template(self) -> None:
        src = HttpTileSource(
            TileSourceConfig(source="https://{s}.t.example/{z}/{x}/{y}/{-y}/{q}.png")
        )
        quadkey = mercantile.quadkey(5, 2, 3)
        assert src.url(3, 5, 2) == f"https://b.t.example/3/5/2/5/{quadkey}.png"
        assert src.url(3, 5, 3).startswith("https://c.")  # (x + y) % 3 picks the subdomain
        with pytest.raises(TileNotFoundError):
            src.fetch(3, 8, 0)  # x outside the z3 grid: no request made
        assert src.stats()["http_requests"] == 0
        src.close()

    def test_wmts_rest_template(self) -> None:
        src = HttpTileSource(
            TileSourceConfig(
                source="https://w.example/wmts/ortho/default/WebMercatorQuad/"
                "{TileMatrix}/{TileRow}/{TileCol}.jpeg"
            )
        )
        assert src.url(17, 68000, 45000).endswith("/WebMercatorQuad/17/45000/68000.jpeg")
        src.close()

    @pytest.mark.parametrize("version,key", [("1.3.0", "CRS"), ("1.1.1", "SRS")])
    def test_wms_getmap_params(self, version: str, key: str) -> None:
        src = WmsTileSource(
            TileSourceConfig(source="wms:https://g/wms", wms_layers="ortho", wms_version=version)
        )
        p = src.params(1, 0, 0)
        assert p["REQUEST"] == "GetMap" and p[key] == "EPSG:3857" and p["LAYERS"] == "ortho"
        left, bottom, right, top = (float(v) for v in p["BBOX"].split(","))
        b = mercantile.xy_bounds(0, 0, 1)
        assert (left, bottom, right, top) == pytest.approx((b.left, b.bottom, b.right, b.top))
        assert p["WIDTH"] == p["HEIGHT"] == "256"
        src.close()


class TestRateLimiting:
    def test_pacing_and_pause(self) -> None:
        now = [100.0]
        slept: list[float] = []

        def sleep(s: float) -> None:
            slept.append(s)
            now[0] += s

        lim = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
        for _ in range(5):
            lim.acquire()
        assert now[0] == pytest.approx(101.0)  # 5 calls at 4/s: 4 intervals of 0.25 s
        lim.pause_until(110.0)
        lim.acquire()
        assert now[0] == pytest.approx(110.0)

    @pytest.mark.parametrize(
        "value,expected",
        [("3", 3.0), (" 0.5 ", 0.5), ("-2", 0.0), ("soon", None), (None, None),
         ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0)],
    )  # fmt: skip
    def test_retry_after(self, value: str | None, expected: float | None) -> None:
        # The HTTP-date case is evaluated 10 s before that date.
        got = parse_retry_after_s(value, now_s=1445412480.0)
        assert got == (None if expected is None else pytest.approx(expected))


def _write_mbtiles(path: Path, tiles: dict[tuple[int, int, int], bytes]) -> None:
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE metadata (name TEXT, value TEXT);"
        "CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER,"
        " tile_data BLOB);"
        "INSERT INTO metadata VALUES ('name', 't'), ('format', 'png'), ('minzoom', '1'),"
        " ('maxzoom', '17');"
    )
    for (z, x, y), data in tiles.items():
        con.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, (1 << z) - 1 - y, data))
    con.commit()
    con.close()


def test_mbtiles_source_flips_rows(tmp_path: Path) -> None:
    data = encode_tile(np.full((256, 256, 3), 7, np.uint8))
    _write_mbtiles(tmp_path / "a.mbtiles", {(2, 1, 0): data})
    src = MBTilesTileSource(tmp_path / "a.mbtiles")
    assert (src.min_zoom, src.max_zoom) == (1, 17)
    assert src.fetch(2, 1, 0) == data
    with pytest.raises(TileNotFoundError):
        src.fetch(2, 1, 3)
    assert src.stats() == {"mbtiles_reads": 2, "mbtiles_missing": 1, "mbtiles_bytes": len(data)}
    src.close()
