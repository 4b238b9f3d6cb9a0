"""Camera models: pixel -> ray -> pixel round trips, CameraInfo parsing, input checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core.camera import EquirectangularCamera, PinholeCamera
from cvgl_ros.core.errors import InvalidInputError

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


def _pixels(rng: np.random.Generator, w: int, h: int, n: int = 200) -> np.ndarray:
    return np.stack([rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n)], axis=1)


def _fold_radius(k1: float, k2: float) -> float:
    """Largest distorted radius (normalised) the radial map ``r (1 + k1 r^2 + k2 r^4)`` reaches
    while it still grows with ``r`` (searched up to r = 3)."""
    r = np.linspace(0.0, 3.0, 30001)
    slope = 1.0 + 3.0 * k1 * r**2 + 5.0 * k2 * r**4
    end = int(np.argmax(slope <= 0.0)) if np.any(slope <= 0.0) else len(r) - 1
    r_d = r[: end + 1] * (1.0 + k1 * r[: end + 1] ** 2 + k2 * r[: end + 1] ** 4)
    return float(np.max(r_d))


@SETTINGS
@given(
    f=st.floats(350.0, 2000.0),
    cx_off=st.floats(-30.0, 30.0),
    k1=st.floats(-0.25, 0.1),
    k2=st.floats(-0.05, 0.05),
    p1=st.floats(-1e-3, 1e-3),
    p2=st.floats(-1e-3, 1e-3),
    seed=st.integers(0, 1000),
)
def test_pinhole_round_trip(
    f: float, cx_off: float, k1: float, k2: float, p1: float, p2: float, seed: int
) -> None:
    cam = PinholeCamera(640, 480, f, f * 1.01, 320 + cx_off, 240 - cx_off, (k1, k2, p1, p2, 0.0))
    px = _pixels(np.random.default_rng(seed), 640, 480)
    # Strong barrel distortion with a short focal length folds the image edges (f = 350 px,
    # k1 = -0.19 folds beyond a distorted radius of 0.89, inside the image): no ray projects
    # there, so only pixels inside the fold (with a margin) have a ray to recover.
    r_fold = _fold_radius(k1, k2)
    r_px = np.hypot((px[:, 0] - cam.cx_px) / cam.fx_px, (px[:, 1] - cam.cy_px) / cam.fy_px)
    px = px[r_px < 0.9 * r_fold]
    assert len(px) >= 20
    rays = cam.rays(px)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-12)
    back = cam.project(rays * 7.5)
    np.testing.assert_allclose(back, px, atol=1e-3)


def test_pinhole_without_distortion_is_exact() -> None:
    cam = PinholeCamera(100, 80, 50.0, 60.0, 49.5, 39.5)
    rays = cam.rays(np.array([[49.5, 39.5], [99.5, 39.5]]))
    np.testing.assert_allclose(rays[0], [0.0, 0.0, 1.0])
    assert rays[1, 0] == pytest.approx(50.0 / np.hypot(50.0, 50.0))  # 45 degrees to the right
    pts = np.array([[1.0, -2.0, 4.0], [0.0, 0.0, -1.0]])
    uv = cam.project(pts)
    np.testing.assert_allclose(uv[0], [49.5 + 50.0 * 0.25, 39.5 - 60.0 * 0.5])
    assert np.all(np.isnan(uv[1]))  # behind the camera


def test_from_camera_info() -> None:
    cam = PinholeCamera.from_camera_info(
        640, 480, [500.0, 0, 320.0, 0, 510.0, 240.0, 0, 0, 1], [0.1, -0.01, 0, 0, 0], "plumb_bob"
    )
    assert (cam.fx_px, cam.fy_px, cam.cx_px, cam.cy_px) == (500.0, 510.0, 320.0, 240.0)
    assert cam.distortion == (0.1, -0.01, 0.0, 0.0, 0.0)
    none = PinholeCamera.from_camera_info(
        640, 480, [500.0, 0, 320.0, 0, 500.0, 240.0, 0, 0, 1], [0, 0, 0, 0, 0], "plumb_bob"
    )
    assert none.distortion == ()
    with pytest.raises(ValueError, match="equidistant"):
        PinholeCamera.from_camera_info(
            640, 480, [500.0, 0, 320, 0, 500, 240, 0, 0, 1], [0.1, 0, 0, 0], "equidistant"
        )
    with pytest.raises(ValueError, match="9 elements"):
        PinholeCamera.from_camera_info(640, 480, [500.0, 0, 320], [], "")


def test_pinhole_validation() -> None:
    with pytest.raises(ValueError, match="fx_px"):
        PinholeCamera(640, 480, 0.0, 500.0, 320.0, 240.0)
    with pytest.raises(ValueError, match="width_px"):
        PinholeCamera(0, 480, 500.0, 500.0, 320.0, 240.0)
    with pytest.raises(ValueError, match="distortion"):
        PinholeCamera(640, 480, 500.0, 500.0, 320.0, 240.0, (0.1, 0.2, 0.3))


@SETTINGS
@given(seed=st.integers(0, 1000))
def test_equirectangular_round_trip(seed: int) -> None:
    cam = EquirectangularCamera(2048, 1024)
    px = _pixels(np.random.default_rng(seed), 2048, 1024)
    px[:, 1] = np.clip(px[:, 1], 1.0, 1022.0)  # the poles are singular in longitude
    rays = cam.rays(px)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(cam.project(rays * 3.0), px, atol=1e-6)


def test_equirectangular_axes() -> None:
    cam = EquirectangularCamera(360, 180)
    centre = cam.rays(np.array([[179.5, 89.5]]))[0]  # image centre looks along optical +z
    np.testing.assert_allclose(centre, [0.0, 0.0, 1.0], atol=1e-12)
    right = cam.rays(np.array([[269.5, 89.5]]))[0]  # a quarter turn right -> optical +x
    np.testing.assert_allclose(right, [1.0, 0.0, 0.0], atol=1e-12)
    up = cam.rays(np.array([[179.5, 0.0]]))[0]  # top row looks up -> optical -y
    assert up[1] < -0.99
    assert cam.depth_kind == "range"


@pytest.mark.parametrize(
    "bad",
    [
        np.empty((0, 2)),
        np.array([[np.nan, 1.0]]),
        np.array([[np.inf, 1.0]]),
        np.array([1.0, 2.0, 3.0]),
    ],
)
def test_bad_pixels_raise(bad: np.ndarray) -> None:
    for cam in (PinholeCamera(64, 48, 50.0, 50.0, 32.0, 24.0), EquirectangularCamera(64, 32)):
        with pytest.raises(InvalidInputError):
            cam.rays(bad)
    with pytest.raises(InvalidInputError):
        PinholeCamera(64, 48, 50.0, 50.0, 32.0, 24.0).project(np.array([[np.nan, 0.0, 1.0]]))
