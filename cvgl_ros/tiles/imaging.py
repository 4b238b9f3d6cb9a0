"""Tile image bytes: validation, decoding to RGB + validity mask, encoding.

A tile is stored only after it decodes completely. ``cv2.imdecode`` alone is not enough: libjpeg
happily returns a grey-filled image for a truncated JPEG, so the container structure is checked
first (JPEG ends with EOI, PNG ends with IEND, WebP's RIFF size matches).
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from cvgl_ros.core.types import BoolArray, UInt8Array
from cvgl_ros.tiles.errors import TileDecodeError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_format(data: bytes) -> str:
    """``jpg``, ``png`` or ``webp`` from the magic bytes.

    Raises:
        TileDecodeError: for anything else (an HTML/XML error page, JSON, empty body).
    """
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == _PNG_SIGNATURE:
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    head = data[:64].lstrip().lower()
    what = "an HTML/XML page" if head.startswith((b"<", b"{")) else "not an image"
    raise TileDecodeError(f"tile bytes are {what} ({len(data)} bytes, starting {data[:16]!r})")


def check_complete(data: bytes) -> str:
    """Check that the bytes hold one complete JPEG, PNG or WebP; returns the format.

    Raises:
        TileDecodeError: unknown format or truncated container.
    """
    fmt = image_format(data)
    if fmt == "jpg":
        # EOI marker; tolerate a few bytes of padding some servers append.
        if b"\xff\xd9" not in data[-32:]:
            raise TileDecodeError(f"truncated JPEG: no end-of-image marker ({len(data)} bytes)")
    elif fmt == "png":
        if len(data) < 20 or data[-12:-4] != b"\x00\x00\x00\x00IEND":
            raise TileDecodeError(f"truncated PNG: no IEND chunk ({len(data)} bytes)")
    else:
        (riff_size,) = struct.unpack("<I", data[4:8])
        if riff_size + 8 != len(data):
            raise TileDecodeError(
                f"truncated WebP: RIFF says {riff_size + 8} bytes, got {len(data)}"
            )
    return fmt


def decode_tile_rgba(data: bytes, expected_size_px: int | None = None) -> UInt8Array:
    """Decode tile bytes to one RGBA array whose alpha is exactly 255 (valid) or 0 (no data).

    The packed layout lets the patch builder copy a tile with one contiguous block copy and
    resample image and mask in one pass.

    Args:
        data: encoded JPEG/PNG/WebP bytes.
        expected_size_px: when given, the tile must be this many pixels wide and high.

    Returns:
        (H, W, 4) uint8: RGB + validity alpha (source alpha >= 128 -> 255; opaque formats
        are valid everywhere).

    Raises:
        TileDecodeError: not an image, truncated, undecodable or of the wrong size.
    """
    check_complete(data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise TileDecodeError(f"image bytes do not decode ({len(data)} bytes)")
    if img.dtype == np.uint16:
        img = np.right_shift(img, 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise TileDecodeError(f"unsupported tile pixel type {img.dtype}")
    if img.ndim == 2:
        rgba = cv2.cvtColor(img, cv2.COLOR_GRAY2RGBA)
    elif img.shape[2] == 3:
        rgba = cv2.cvtColor(img, cv2.COLOR_BGR2RGBA)
    elif img.shape[2] == 4:
        rgba = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
        rgba[:, :, 3] = np.where(rgba[:, :, 3] >= 128, np.uint8(255), np.uint8(0))
    else:
        raise TileDecodeError(f"unsupported channel count {img.shape[2]}")
    if expected_size_px is not None and rgba.shape[:2] != (expected_size_px, expected_size_px):
        raise TileDecodeError(
            f"tile is {rgba.shape[1]}x{rgba.shape[0]} px, expected {expected_size_px} px square"
        )
    return np.asarray(rgba, dtype=np.uint8)


def decode_tile(data: bytes, expected_size_px: int | None = None) -> tuple[UInt8Array, BoolArray]:
    """Decode tile bytes to RGB and a validity mask.

    Args:
        data: encoded JPEG/PNG/WebP bytes.
        expected_size_px: when given, the tile must be this many pixels wide and high.

    Returns:
        (rgb, valid): (H, W, 3) uint8 RGB and (H, W) bool, True where the pixel holds imagery
        (alpha >= 128 for images with alpha, everywhere otherwise).

    Raises:
        TileDecodeError: not an image, truncated, undecodable or of the wrong size.
    """
    return split_rgba(decode_tile_rgba(data, expected_size_px))


def split_rgba(rgba: np.ndarray) -> tuple[UInt8Array, BoolArray]:
    """RGB + validity alpha -> RGB and a validity mask.

    Args:
        rgba: (H, W, 4) uint8; alpha 255 marks valid pixels (as :func:`decode_tile_rgba` packs
            them; after resampling, anything below 255 touched an invalid pixel).

    Returns:
        (rgb, valid): (H, W, 3) uint8 and (H, W) bool, True exactly where alpha is 255.
    """
    rgb = np.asarray(cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB), dtype=np.uint8)
    return rgb, np.asarray(cv2.extractChannel(rgba, 3) == 255, dtype=np.bool_)


def encode_tile(rgb: UInt8Array, valid: BoolArray | None = None, fmt: str = "png") -> bytes:
    """Encode RGB (+ mask as alpha) to PNG or JPEG bytes (JPEG drops the mask)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        if valid is not None and not bool(np.all(valid)):
            alpha = np.where(valid, 255, 0).astype(np.uint8)
            bgr = np.dstack([bgr, alpha])
        ok, buf = cv2.imencode(".png", bgr)
    elif fmt in ("jpg", "jpeg"):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    else:
        raise ValueError(f"fmt must be 'png' or 'jpg', got {fmt!r}")
    if not ok:
        raise TileDecodeError(f"could not encode a {fmt} tile")
    return bytes(buf.tobytes())
