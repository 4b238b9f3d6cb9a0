"""Argument helpers of ``cvgl-ros prefetch`` (the end-to-end CLI runs in test/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvgl_ros.tiles.geo import tiles_in_radius
from cvgl_ros.tools.cli import build_parser
from cvgl_ros.tools.prefetch import parse_bbox, parse_zooms, read_gpx_points, route_tiles


def test_parse_zooms() -> None:
    assert parse_zooms("18") == [18]
    assert parse_zooms("17-19") == [17, 18, 19]
    assert parse_zooms("16, 18,18") == [16, 18]
    for bad in ("", "25", "-1", "a"):
        with pytest.raises(ValueError):
            parse_zooms(bad)


def test_parse_bbox() -> None:
    assert parse_bbox("-84.5,33.6,-84.4,33.7") == (-84.5, 33.6, -84.4, 33.7)
    for bad in ("1,2,3", "2,0,1,1", "0,2,1,1", "0,0,200,1"):
        with pytest.raises(ValueError):
            parse_bbox(bad)


def test_gpx_points_and_route_tiles(tmp_path: Path) -> None:
    gpx = tmp_path / "r.gpx"
    gpx.write_text(
        '<?xml version="1.0"?><gpx xmlns="http://www.topografix.com/GPX/1/1" version="1.1">'
        '<wpt lat="47.0" lon="8.0"/><rte><rtept lat="47.0" lon="8.0"/>'
        '<rtept lat="47.0" lon="8.01"/></rte></gpx>'
    )
    pts = read_gpx_points(gpx)
    assert pts == [(47.0, 8.0), (47.0, 8.0), (47.0, 8.01)]
    tiles = route_tiles(pts, 50.0, 18)
    # Both ends and the middle of the 760 m route are covered, each tile once.
    for lon in (8.0, 8.005, 8.01):
        assert set(tiles_in_radius(47.0, lon, 50.0, 18)) <= set(tiles)
    assert len(tiles) == len(set(tiles))
    (tmp_path / "empty.gpx").write_text("<gpx/>")
    with pytest.raises(ValueError, match="no trkpt"):
        read_gpx_points(tmp_path / "empty.gpx")


def test_subcommand_is_registered() -> None:
    args = build_parser().parse_args(
        ["prefetch", "--source", "x.mbtiles", "--cache", "c.mbtiles", "--bbox=-1,0,1,1",
         "--zoom", "3"]
    )  # fmt: skip
    assert args.command == "prefetch" and args.bbox == "-1,0,1,1" and callable(args.func)
