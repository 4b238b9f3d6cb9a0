"""Image preparation for the networks, without torch (used by the ONNX Runtime path too)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cvgl_ros.core.view import MatchView


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


def render_view(image: np.ndarray, view: MatchView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The camera image as the view shows it: area-averaged to ``view.scale``, rotated by
    ``view.rotation_rad`` onto a canvas that holds it all (for matchers whose features are not
    rotation invariant).

    Args:
        image: (H, W, 3) or (H, W) uint8 camera image.
        view: the view (:func:`cvgl_ros.core.view.plan_view`).

    Returns:
        ``(view_image, valid_mask, image_from_view)``: the view (canvas size, black outside
        the image), (h, w) bool True where it shows the image, and the (2, 3) affine mapping
        view pixels back to camera-image pixels.
    """
    import cv2

    from cvgl_ros.core.view import invert_affine, view_from_image

    img: np.ndarray = np.ascontiguousarray(np.asarray(image))
    h, w = img.shape[:2]
    affine, canvas, resized = view_from_image(w, h, view)
    resize, _, _ = view_from_image(w, h, replace(view, rotation_rad=0.0))
    if resized != (w, h):
        img = cv2.resize(img, resized, interpolation=cv2.INTER_AREA)
    inside: np.ndarray = np.full((resized[1], resized[0]), 255, np.uint8)
    if view.rotation_rad != 0.0:
        # The rotation part of the view: resized pixels -> view pixels.
        square = np.vstack([affine, [0.0, 0.0, 1.0]]) @ np.linalg.inv(
            np.vstack([resize, [0.0, 0.0, 1.0]])
        )
        turn = square[:2]
        img = cv2.warpAffine(img, turn, canvas, flags=cv2.INTER_LINEAR, borderValue=0)
        inside = cv2.warpAffine(inside, turn, canvas, flags=cv2.INTER_NEAREST, borderValue=0)
    return img, inside > 0, invert_affine(affine)
