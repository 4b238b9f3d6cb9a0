"""Image preparation for the networks, without torch (used by the ONNX Runtime path too)."""

from __future__ import annotations

import numpy as np


def prepare_image(image: np.ndarray, size_hw_px: tuple[int, int]) -> np.ndarray:
    """Resize an RGB/mono uint8 image to the network size and scale to [0, 1].

    Args:
        image: (H, W, 3) uint8 RGB (an alpha channel is dropped) or (H, W) / (H, W, 1) uint8
            mono.
        size_hw_px: (height, width) of the network input, multiples of 14.

    Returns:
        (1, 3, height, width) float32 RGB in [0, 1].
    """
    import cv2

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) or (H, W) uint8, got {img.shape} {img.dtype}")
    img = img[:, :, :3]
    h, w = size_hw_px
    if img.shape[:2] != (h, w):
        shrink = img.shape[0] > h or img.shape[1] > w
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    out = img.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0)
    return np.ascontiguousarray(out)
