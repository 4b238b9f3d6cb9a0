"""Photometric differences between the map and the camera: gamma, blur, noise, JPEG."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from cvgl_ros.core.types import UInt8Array


@dataclass(frozen=True)
class PhotometricConfig:
    """Random appearance changes applied to each rendered frame.

    Attributes:
        gamma_min: smallest gamma (< 1 brightens).
        gamma_max: largest gamma.
        gain_sigma: per-channel colour gain standard deviation (white balance).
        blur_sigma_px_max: Gaussian blur sigma drawn uniformly in [0, this], pixels.
        noise_sigma: additive Gaussian noise standard deviation, 8-bit levels.
        jpeg_quality: JPEG round trip quality 1..100 (0 = none).
    """

    gamma_min: float = 0.8
    gamma_max: float = 1.25
    gain_sigma: float = 0.05
    blur_sigma_px_max: float = 1.0
    noise_sigma: float = 3.0
    jpeg_quality: int = 80

    def __post_init__(self) -> None:
        if not (0.0 < self.gamma_min <= self.gamma_max) or not math.isfinite(self.gamma_max):
            raise ValueError(
                f"gamma_min/gamma_max must satisfy 0 < min <= max, got "
                f"{self.gamma_min}, {self.gamma_max}"
            )
        for name in ("gain_sigma", "blur_sigma_px_max", "noise_sigma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [0, 100], got {self.jpeg_quality}")

    @classmethod
    def none(cls) -> PhotometricConfig:
        """No change at all (the rendered pixels unchanged)."""
        return cls(1.0, 1.0, 0.0, 0.0, 0.0, 0)


def apply_photometric(
    image: UInt8Array, cfg: PhotometricConfig, rng: np.random.Generator
) -> UInt8Array:
    """Apply one random draw of the configured changes.

    Args:
        image: (H, W, 3) uint8 RGB.
        cfg: what to change.
        rng: random generator (the caller owns the seed).

    Returns:
        (H, W, 3) uint8 RGB, a new array.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    out = image.astype(np.float32) / 255.0
    gamma = float(rng.uniform(cfg.gamma_min, cfg.gamma_max))
    if gamma != 1.0:
        out = np.power(out, gamma)
    if cfg.gain_sigma > 0.0:
        out = out * (1.0 + rng.normal(0.0, cfg.gain_sigma, 3)).astype(np.float32)[None, None, :]
    out = out * 255.0
    if cfg.blur_sigma_px_max > 0.0:
        sigma = float(rng.uniform(0.0, cfg.blur_sigma_px_max))
        if sigma > 0.05:
            out = np.asarray(cv2.GaussianBlur(out, (0, 0), sigma), dtype=np.float32)
    if cfg.noise_sigma > 0.0:
        out = out + rng.normal(0.0, cfg.noise_sigma, out.shape).astype(np.float32)
    result: UInt8Array = np.asarray(np.clip(out + 0.5, 0, 255), dtype=np.uint8)
    if cfg.jpeg_quality > 0:
        ok, buf = cv2.imencode(
            ".jpg", result[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]
        )
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            result = np.ascontiguousarray(np.asarray(decoded, dtype=np.uint8)[..., ::-1])
    return result
