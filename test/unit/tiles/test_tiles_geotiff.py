"""GeoTiffPatchSource on synthetic GeoTIFFs written in tmp_path (known georeference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.errors import InvalidInputError, NoImageryError
from cvgl_ros.tiles import GeoTiffPatchSource, PatchConfig, build_patch_source
from cvgl_ros.tiles.geo import en_to_lonlat, lonlat_to_en, source_pixel_maps

UTM33N = "EPSG:32633"
ORIGIN_E, ORIGIN_N = 500_000.0, 5_000_000.0  # top-left corner, metres (UTM 33N, ~45 N 15 E)


def _write_tif(
    path: Path,
    data: np.ndarray,
    res_m: float,
    crs: str = UTM33N,
    nodata: float | None = None,
    colorinterp: tuple[str, ...] | None = None,
) -> Path:
    bands, h, w = data.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": bands,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": Affine(res_m, 0.0, ORIGIN_E, 0.0, -res_m, ORIGIN_N),
    }
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if colorinterp:
            from rasterio.enums import ColorInterp

            ds.colorinterp = [getattr(ColorInterp, c) for c in colorinterp]
    return path


def _checker(h: int, w: int, cell: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy // cell + xx // cell) % 2) * 200 + 20).astype(np.uint8)


def _utm_to_lonlat(e: float, n: float) -> tuple[float, float]:
    t = pyproj.Transformer.from_crs(UTM33N, "EPSG:4326", always_xy=True)
    lon, lat = t.transform(e, n)
    return float(lon), float(lat)


class TestGeoreference:
    def test_marker_lands_at_patch_centre(self, tmp_path: Path) -> None:
        data = np.zeros((3, 400, 400), np.uint8)
        data[:, 200, 300] = (255, 128, 64)  # one bright pixel
        tif = _write_tif(tmp_path / "m.tif", data, 1.0)
        # Centre of pixel (col 300, row 200) in UTM, then WGS84.
        lon, lat = _utm_to_lonlat(ORIGIN_E + 300.5, ORIGIN_N - 200.5)
        with GeoTiffPatchSource(tif, patch_size_px=64, patch_m_per_px=1.0) as src:
            p = src.patch_at(lat, lon)
        assert p.image.shape == (64, 64, 3)
        assert p.center_lat_deg == lat and p.center_lon_deg == lon
        # The marker is spread over a 2x2 neighbourhood at most; its peak sits at the centre.
        v, u = np.unravel_index(np.argmax(p.image[:, :, 0]), p.image.shape[:2])
        centre = p.en_to_pixel(np.zeros((1, 2)))[0]
        assert abs(u - centre[0]) <= 1.0 and abs(v - centre[1]) <= 1.0
        assert p.image[v, u, 0] > 60

    def test_offset_pixel_matches_geodesic_position(self, tmp_path: Path) -> None:
        """A pixel 30 m east / 20 m north of the centre appears where pixel_to_en says."""
        data = np.zeros((3, 300, 300), np.uint8)
        data[:, 100, 180] = 255
        tif = _write_tif(tmp_path / "o.tif", data, 1.0)
        lon0, lat0 = _utm_to_lonlat(ORIGIN_E + 150.5, ORIGIN_N - 120.5)
        lon_m, lat_m = _utm_to_lonlat(ORIGIN_E + 180.5, ORIGIN_N - 100.5)
        with GeoTiffPatchSource(tif, patch_size_px=128, patch_m_per_px=0.5) as src:
            p = src.patch_at(lat0, lon0)
        e, n = lonlat_to_en(lat0, lon0, np.array([lon_m]), np.array([lat_m]))
        expect_uv = p.en_to_pixel(np.array([[e[0], n[0]]]))[0]
        img = p.image[:, :, 0].astype(float)
        vv, uu = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
        w = img / img.sum()
        centroid = np.array([(uu * w).sum(), (vv * w).sum()])
        assert np.linalg.norm(centroid - expect_uv) < 1.0

    def test_sixteen_bit_is_stretched_and_nodata_masked(self, tmp_path: Path) -> None:
        data = (np.arange(200 * 200, dtype=np.uint16).reshape(1, 200, 200) % 4000) + 1000
        data[:, :, :100] = 0  # nodata: west half
        tif = _write_tif(tmp_path / "p.tif", data, 0.5, nodata=0)
        lon, lat = _utm_to_lonlat(ORIGIN_E + 50.0, ORIGIN_N - 50.0)  # on the nodata seam
        with GeoTiffPatchSource(tif, patch_size_px=100, patch_m_per_px=0.5) as src:
            p = src.patch_at(lat, lon)
        assert p.image.dtype == np.uint8
        assert 0.4 < p.valid_mask.mean() < 0.6
        assert not p.valid_mask[:, :40].any() and p.valid_mask[:, 60:].all()
        assert p.image[p.valid_mask].max() >= 250 and p.image[p.valid_mask].min() <= 5
        # Grey replicated to RGB.
        assert np.array_equal(p.image[:, :, 0], p.image[:, :, 2])

    def test_big_world_patch_decimates_and_covers(self, tmp_path: Path) -> None:
        tif = _write_tif(tmp_path / "c.tif", np.stack([_checker(600, 600, 50)] * 3), 0.25)
        lon, lat = _utm_to_lonlat(ORIGIN_E + 75.0, ORIGIN_N - 75.0)
        with GeoTiffPatchSource(tif, patch_size_px=4096, patch_m_per_px=0.05) as src:
            big = src.patch_at(lat, lon)
            coarse = src.patch_at(lat, lon, patch_size_px=64, patch_m_per_px=4.0)
            assert src.stats()["patches"] == 2
        assert big.image.shape == (4096, 4096, 3)
        # 4096 px at 0.05 m/px = 204.8 m around a point 75 m inside the 150 m raster.
        assert 0.45 < big.valid_mask.mean() < 0.60
        # 64 px at 4 m/px = 256 m: the 150 m raster covers about (150/256)^2 of it.
        assert 0.25 < coarse.valid_mask.mean() < 0.40

    def test_build_patch_source_returns_geotiff_source(self, tmp_path: Path) -> None:
        tif = _write_tif(tmp_path / "b.tif", np.stack([_checker(100, 100, 10)] * 3), 1.0)
        lon, lat = _utm_to_lonlat(ORIGIN_E + 50.0, ORIGIN_N - 50.0)
        src = build_patch_source(str(tif), None, PatchConfig(patch_size_px=32, patch_m_per_px=1.0))
        assert isinstance(src, GeoTiffPatchSource)
        assert src.patch_at(lat, lon).valid_mask.all()
        src.close()


class TestFailures:
    @pytest.fixture
    def src(self, tmp_path: Path) -> GeoTiffPatchSource:
        tif = _write_tif(tmp_path / "f.tif", np.stack([_checker(100, 100, 10)] * 3), 1.0)
        return GeoTiffPatchSource(
            tif, patch_size_px=32, patch_m_per_px=1.0, min_valid_fraction=0.5
        )

    def test_far_away_raises_no_imagery(self, src: GeoTiffPatchSource) -> None:
        with pytest.raises(NoImageryError):
            src.patch_at(10.0, 100.0)
        assert src.stats()["no_imagery"] == 1

    def test_mostly_outside_raises_no_imagery(self, src: GeoTiffPatchSource) -> None:
        lon, lat = _utm_to_lonlat(ORIGIN_E + 99.0, ORIGIN_N - 99.0)  # corner: 1/4 valid
        with pytest.raises(NoImageryError, match="imagery"):
            src.patch_at(lat, lon)

    @pytest.mark.parametrize("lat,lon", [(float("nan"), 15.0), (45.0, float("inf")), (91.0, 0.0)])
    def test_bad_fix_raises_invalid_input(
        self, src: GeoTiffPatchSource, lat: float, lon: float
    ) -> None:
        with pytest.raises(InvalidInputError):
            src.patch_at(lat, lon)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            GeoTiffPatchSource(tmp_path / "nope.tif")

    def test_no_crs_is_rejected(self, tmp_path: Path) -> None:
        path = tmp_path / "nocrs.tif"
        with (
            pytest.warns(rasterio.errors.NotGeoreferencedWarning),
            rasterio.open(
                path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8"
            ) as ds,
        ):
            ds.write(np.zeros((1, 8, 8), np.uint8))
        with (
            pytest.warns(rasterio.errors.NotGeoreferencedWarning),
            pytest.raises(ValueError, match="CRS"),
        ):
            GeoTiffPatchSource(path)


@settings(max_examples=40, deadline=None)
@given(
    lat=st.floats(-80.0, 80.0),
    lon=st.floats(-179.0, 179.0),
    e=st.floats(-3000.0, 3000.0),
    n=st.floats(-3000.0, 3000.0),
)
def test_en_lonlat_round_trip(lat: float, lon: float, e: float, n: float) -> None:
    lon2, lat2 = en_to_lonlat(lat, lon, np.array([e]), np.array([n]))
    e2, n2 = lonlat_to_en(lat, lon, lon2, lat2)
    assert abs(e2[0] - e) < 1e-6 and abs(n2[0] - n) < 1e-6


@settings(max_examples=20, deadline=None)
@given(lat=st.floats(-75.0, 75.0), lon=st.floats(-170.0, 170.0), size=st.integers(40, 700))
def test_interpolated_maps_match_dense_projection(lat: float, lon: float, size: int) -> None:
    """The coarse-grid interpolation stays within 0.01 px of the exact per-pixel projection."""
    t = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    mpp = 0.3

    def to_px(lo: np.ndarray, la: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = t.transform(lo, la)
        return np.asarray(x) / 0.25, -np.asarray(y) / 0.25

    mx, my, ox, oy = source_pixel_maps(lat, lon, size, mpp, to_px, step_px=32)
    rng = np.random.default_rng(0)
    u = rng.integers(0, size, 50)
    v = rng.integers(0, size, 50)
    from cvgl_ros.tiles.geo import patch_pixel_to_en

    ee, nn = patch_pixel_to_en(u, v, size, mpp)
    lo, la = en_to_lonlat(lat, lon, ee, nn)
    ex, ey = to_px(lo, la)
    # Global coordinates reach 1.6e8 px here: the offsets keep float32 maps precise.
    assert np.max(np.abs(mx[v, u].astype(np.float64) + ox - ex)) < 0.01
    assert np.max(np.abs(my[v, u].astype(np.float64) + oy - ey)) < 0.01


def test_patch_config_validation() -> None:
    with pytest.raises(ValueError, match="patch_size_px"):
        PatchConfig(patch_size_px=0)
    with pytest.raises(ValueError, match="patch_m_per_px"):
        PatchConfig(patch_m_per_px=float("nan"))


@pytest.mark.parametrize(("crs", "res"), [(UTM33N, 0.3), ("EPSG:4326", 2e-6)])
def test_native_resolution_in_metres_for_any_crs(tmp_path: Path, crs: str, res: float) -> None:
    """A UTM raster's pixel size, and a geographic raster's degrees turned into metres."""
    data = _checker(200, 200, 10)[None]
    tif = tmp_path / "native.tif"
    bands, h, w = data.shape
    origin = (ORIGIN_E, ORIGIN_N) if crs == UTM33N else (15.0, 45.0)
    with rasterio.open(
        tif, "w", driver="GTiff", width=w, height=h, count=bands, dtype="uint8", crs=crs,
        transform=Affine(res, 0.0, origin[0], 0.0, -res, origin[1]),
    ) as ds:  # fmt: skip
        ds.write(data)
    src = GeoTiffPatchSource(tif)
    if crs == UTM33N:
        lon, lat = _utm_to_lonlat(ORIGIN_E + 30.0, ORIGIN_N - 30.0)
        assert src.native_m_per_px_at(lat, lon) == pytest.approx(0.3, rel=2e-3)
    else:
        lat, lon = 45.0 - 100 * res, 15.0 + 100 * res
        geod = pyproj.Geod(ellps="WGS84")
        east_m = geod.inv(lon, lat, lon + res, lat)[2]
        north_m = geod.inv(lon, lat, lon, lat + res)[2]
        expected = (east_m * north_m) ** 0.5
        assert src.native_m_per_px_at(lat, lon) == pytest.approx(expected, rel=2e-3)
    with pytest.raises(InvalidInputError):
        src.native_m_per_px_at(float("nan"), 0.0)
