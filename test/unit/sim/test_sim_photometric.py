"""Photometric changes: identity when disabled, bounded changes otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from cvgl_ros.sim.photometric import PhotometricConfig, apply_photometric


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)


def test_none_is_identity(image: np.ndarray) -> None:
    out = apply_photometric(image, PhotometricConfig.none(), np.random.default_rng(1))
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_default_changes_but_keeps_structure(image: np.ndarray) -> None:
    out = apply_photometric(image, PhotometricConfig(), np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.any(out != image)
    a = image.astype(np.float64).ravel()
    b = out.astype(np.float64).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.5


def test_gamma_darkens(image: np.ndarray) -> None:
    cfg = PhotometricConfig(2.0, 2.0, 0.0, 0.0, 0.0, 0)
    out = apply_photometric(image, cfg, np.random.default_rng(0))
    assert out.astype(np.float64).mean() < image.astype(np.float64).mean() - 20


def test_rejects_bad_image() -> None:
    with pytest.raises(ValueError, match="uint8"):
        apply_photometric(np.zeros((4, 4), np.uint8), PhotometricConfig(), np.random.default_rng())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"gamma_min": 0.0}, "gamma_min"),
        ({"noise_sigma": -1.0}, "noise_sigma"),
        ({"jpeg_quality": 101}, "jpeg_quality"),
    ],
)
def test_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PhotometricConfig(**kwargs)  # type: ignore[arg-type]
