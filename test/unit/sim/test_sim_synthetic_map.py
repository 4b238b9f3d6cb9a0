"""The procedural synthetic orthophoto: deterministic, textured, correctly georeferenced."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.sim.synthetic_map import (
    SyntheticMapConfig,
    generate_synthetic_orthophoto,
    synthetic_world,
    write_geotiff,
)

SMALL = SyntheticMapConfig(size_px=256, num_fields=8, num_roads=2, num_buildings=20, num_trees=100)


def test_deterministic_and_seed_dependent() -> None:
    a = generate_synthetic_orthophoto(SMALL)
    b = generate_synthetic_orthophoto(SMALL)
    np.testing.assert_array_equal(a, b)
    c = generate_synthetic_orthophoto(SyntheticMapConfig(**{**SMALL.__dict__, "seed": 8}))
    assert np.mean(a != c) > 0.5
    assert a.shape == (256, 256, 3) and a.dtype == np.uint8


def test_textured_enough_for_sift() -> None:
    img = generate_synthetic_orthophoto(SMALL)
    kps = cv2.SIFT_create().detect(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), None)
    assert len(kps) > 150


def test_geotiff_is_labelled_and_reads_back_exactly(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    world = synthetic_world(SMALL)
    path = write_geotiff(tmp_path / "map.tif", world)
    with rasterio.open(path) as ds:
        assert ds.tags()["SYNTHETIC"] == "1"
        assert "SYNTHETIC" in ds.tags()["DESCRIPTION"]
        np.testing.assert_array_equal(np.transpose(ds.read(), (1, 2, 0)), world.image)
    geotiff = pytest.importorskip("cvgl_ros.tiles.geotiff")
    enu = LocalEnu(world.center_lat_deg, world.center_lon_deg)
    lat, lon = enu.to_wgs84(12.0, -7.0)
    with geotiff.GeoTiffPatchSource(path, patch_size_px=64, patch_m_per_px=world.m_per_px) as src:
        patch = src.patch_at(float(lat), float(lon))
    # The same crop of the in-memory world (12 m east, 7 m south of the centre = +24, +14 px).
    u0 = 128 + 24 - 32
    v0 = 128 + 14 - 32
    expected = world.image[v0 : v0 + 64, u0 : u0 + 64].astype(np.int16)
    assert np.abs(patch.image.astype(np.int16) - expected).mean() < 1.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"size_px": 10}, "size_px"),
        ({"m_per_px": 0.0}, "m_per_px"),
        ({"center_lat_deg": 89.0}, "center_lat_deg"),
    ],
)
def test_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SyntheticMapConfig(**kwargs)  # type: ignore[arg-type]
