"""Depth Anything provider's per-frame path: one network run per image, depth sampled at the
requested pixels only, consistent with a full-resolution resize of the network output."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from cvgl_ros.backends.base import BackendBase
from cvgl_ros.models.config import DepthModelConfig
from cvgl_ros.models.depth import DepthAnythingDepth


class RampDepthNet(BackendBase):
    """An InferenceBackend double whose "disparity" is a smooth ramp (plus an optional zero
    band: sky); counts its runs."""

    input_names = ("images",)
    output_names = ("depth",)

    def __init__(self, offset: float = 1.0, sky_rows: int = 0) -> None:
        super().__init__()
        self.offset = offset
        self.sky_rows = sky_rows
        self.runs = 0
        self.last_latency_s = 0.001

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.runs += 1
        _, _, h, w = inputs["images"].shape
        v, u = np.mgrid[0:h, 0:w].astype(np.float32)
        disp = self.offset + 0.02 * u + 0.05 * v + inputs["images"][0, 0] * 0.0
        disp[: self.sky_rows] = 0.0
        return {"depth": disp[None]}


def _provider(net: RampDepthNet, metric: bool = False) -> DepthAnythingDepth:
    cfg = DepthModelConfig(input_size_px=(56, 70), metric=metric)
    return DepthAnythingDepth(net, cfg)  # type: ignore[arg-type]


def test_network_runs_once_per_image() -> None:
    net = RampDepthNet()
    provider = _provider(net)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    pix = np.array([[10.0, 20.0], [100.5, 60.25]])
    first = provider.depth_at(img, None, pix, np.eye(3))  # type: ignore[arg-type]
    again = provider.depth_at(img.copy(), None, pix[::-1], np.eye(3))  # type: ignore[arg-type]
    provider.depth_map(img)
    assert net.runs == 1 and provider.runs == 1
    np.testing.assert_array_equal(first, again[::-1])
    provider.depth_at(img[::-1].copy(), None, pix, np.eye(3))  # type: ignore[arg-type]
    assert net.runs == 2
    assert provider.backend is net
    provider.forget_last_image()  # benchmarks: the same image runs the network again
    provider.depth_at(img[::-1].copy(), None, pix, np.eye(3))  # type: ignore[arg-type]
    assert net.runs == 3


@pytest.mark.parametrize("metric", [False, True])
def test_sampling_matches_a_full_resolution_resize(metric: bool) -> None:
    """The sampled depth equals (to interpolation order) what resizing the network output to
    the image and reading the pixel gives, without computing the full-resolution map."""
    import cv2

    net = RampDepthNet(offset=2.0)
    provider = _provider(net, metric)
    img = np.zeros((120, 160, 3), np.uint8)
    rng = np.random.default_rng(1)
    pix = np.column_stack([rng.uniform(0, 159, 200), rng.uniform(0, 119, 200)])
    got = provider.depth_at(img, None, pix, np.eye(3))  # type: ignore[arg-type]
    raw = net.run({"images": np.zeros((1, 3, 56, 70), np.float32)})["depth"][0]
    full = cv2.resize(raw, (160, 120), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    expected_map = full if metric else 1.0 / full
    nearest = expected_map[np.round(pix[:, 1]).astype(int), np.round(pix[:, 0]).astype(int)]
    np.testing.assert_allclose(got, nearest, rtol=0.03)
    # Exactly at pixel centres the dense map and depth_at agree bit for bit.
    dense = provider.depth_map(img)
    ij = np.array([[0, 0], [37, 81], [119, 159]])
    at = provider.depth_at(img, None, ij[:, ::-1].astype(float), np.eye(3))  # type: ignore[arg-type]
    np.testing.assert_array_equal(at, dense[ij[:, 0], ij[:, 1]])
    assert dense.dtype == np.float64 and got.dtype == np.float64


def test_sky_and_outside_are_nan() -> None:
    provider = _provider(RampDepthNet(sky_rows=20))
    img = np.zeros((112, 140, 3), np.uint8)  # 2x the network input: row r -> net row r / 2
    pix = np.array([[50.0, 5.0], [50.0, 100.0], [-1.0, 50.0], [50.0, 112.0], [np.nan, 1.0]])
    d = provider.depth_at(img, None, pix, np.eye(3))  # type: ignore[arg-type]
    assert np.isnan(d[0]), "zero disparity (sky) has no depth"
    assert np.isfinite(d[1]) and d[1] > 0
    assert np.all(np.isnan(d[2:])), "outside the image and non-finite pixels"


def test_metric_non_positive_is_nan() -> None:
    provider = _provider(RampDepthNet(offset=-1.0), metric=True)
    img = np.zeros((56, 70, 3), np.uint8)
    d = provider.depth_at(img, None, np.array([[0.0, 0.0], [60.0, 50.0]]), np.eye(3))  # type: ignore[arg-type]
    assert np.isnan(d[0]) and d[1] > 0
