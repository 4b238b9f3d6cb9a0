"""ROS message <-> core conversions.

Readers (message -> core) are duck-typed on field names, so they accept rclpy messages,
messages deserialised by the ``rosbags`` package (ROS 2 and ROS 1 bags: ``K``/``D`` field
spellings included) and plain test doubles alike; they import no ROS package. Writers
(core -> message) fill rclpy message classes, imported lazily; the pure helpers they use
(:func:`pose_covariance_6x6`, :func:`navsat_fix_fields`, and the core's
:func:`~cvgl_ros.core.attitude.quaternion_xyzw_from_yaw`) serve writers of other message
flavours (rosbags) too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from cvgl_ros.core.attitude import quaternion_xyzw_from_yaw
from cvgl_ros.core.types import FloatArray, GnssPrior, PoseEstimate, UInt8Array
from cvgl_ros.ros import constants as const
from cvgl_ros.ros.errors import CameraInfoError, FixRejectedError, ImageConversionError

if TYPE_CHECKING:
    from cvgl_ros.core.camera import PinholeCamera
    from cvgl_ros.core.extrinsics import CameraExtrinsics

# encoding -> (channels, numpy dtype, OpenCV conversion to RGB or None)
_RAW_ENCODINGS: dict[str, tuple[int, type, int | None]] = {
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8UC1": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "rgb8": (3, np.uint8, None),
    "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "8UC3": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "8UC4": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    "16UC1": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    "rgb16": (3, np.uint16, None),
    "bgr16": (3, np.uint16, cv2.COLOR_BGR2RGB),
    # ROS names the Bayer pattern from the top-left pixel; OpenCV from the second row/column.
    "bayer_rggb8": (1, np.uint8, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": (1, np.uint8, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, np.uint8, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": (1, np.uint8, cv2.COLOR_BayerGB2RGB),
    "yuv422": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, np.uint8, cv2.COLOR_YUV2RGB_YUYV),
    "yuyv": (2, np.uint8, cv2.COLOR_YUV2RGB_YUYV),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_RAW_ENCODINGS)
"""``sensor_msgs/Image`` encodings :func:`image_to_rgb` decodes; others are counted and skipped."""

_STRETCH_PERCENTILES = (2.0, 98.0)
_STRETCH_MAX_SAMPLES = 65536


# --------------------------------------------------------------------------- time


def stamp_to_s(stamp: Any) -> float:
    """``builtin_interfaces/Time`` (``sec``/``nanosec``; ROS 1 ``secs``/``nsecs``) -> seconds."""
    if hasattr(stamp, "sec"):
        return float(stamp.sec) + 1e-9 * float(stamp.nanosec)
    return float(stamp.secs) + 1e-9 * float(stamp.nsecs)


def s_to_sec_nanosec(stamp_s: float) -> tuple[int, int]:
    """Seconds -> (sec, nanosec) with nanosec in [0, 1e9), rounding to the nearest nanosecond."""
    sec = math.floor(stamp_s)
    nanosec = round((stamp_s - sec) * 1e9)  # the difference is exact: no loss at epoch scale
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return int(sec), int(nanosec)


def header_stamp_s(msg: Any) -> float:
    """The ``header.stamp`` of a message, in seconds."""
    return stamp_to_s(msg.header.stamp)


def header_stamp(msg: Any) -> tuple[int, int]:
    """The exact ``header.stamp`` of a message as (sec, nanosec)."""
    stamp = msg.header.stamp
    if hasattr(stamp, "sec"):
        return int(stamp.sec), int(stamp.nanosec)
    return int(stamp.secs), int(stamp.nsecs)


# --------------------------------------------------------------------------- images


def is_compressed_image(msg: Any) -> bool:
    """True for ``sensor_msgs/CompressedImage``-shaped messages (``format``, no ``encoding``)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def _as_uint8_buffer(data: Any) -> np.ndarray:
    """Message ``data`` (bytes, array.array, list, numpy) -> flat uint8 view without copying."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview)) or hasattr(data, "typecode"):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def stretch_to_uint8(image: np.ndarray) -> UInt8Array:
    """Linear 2nd-98th percentile stretch of a high-bit-depth image to uint8.

    Thermal and panchromatic cameras use a small part of the 16-bit range; a plain ``>> 8``
    would leave them almost black, so the stretch adapts to the frame.

    Args:
        image: (H, W) or (H, W, C) integer or float array.

    Returns:
        Same shape, uint8.
    """
    flat = image.reshape(-1)
    stride = max(1, flat.size // _STRETCH_MAX_SAMPLES)
    sample = flat[::stride].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.zeros(image.shape, dtype=np.uint8)
    lo, hi = np.percentile(sample, _STRETCH_PERCENTILES)
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
    if not hi > lo:
        return np.zeros(image.shape, dtype=np.uint8)
    if image.dtype == np.uint16:  # a 64 K lookup table beats float arithmetic per pixel
        levels = np.arange(65536, dtype=np.float32)
        lut = np.clip((levels - np.float32(lo)) * np.float32(255.0 / (hi - lo)), 0.0, 255.0)
        out: UInt8Array = lut.astype(np.uint8)[image]
        return out
    scaled = (image.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    stretched: UInt8Array = np.clip(np.nan_to_num(scaled), 0.0, 255.0).astype(np.uint8)
    return stretched


def _to_rgb(pixels: np.ndarray, conversion: int | None) -> UInt8Array:
    if pixels.dtype != np.uint8:
        pixels = stretch_to_uint8(pixels)
    rgb = pixels if conversion is None else cv2.cvtColor(np.ascontiguousarray(pixels), conversion)
    out = np.ascontiguousarray(rgb, dtype=np.uint8)
    # A view of read-only message bytes would surprise any consumer that writes in place.
    return out if out.flags.writeable else out.copy()


def image_to_rgb(msg: Any) -> UInt8Array:
    """``sensor_msgs/Image`` -> RGB pixels.

    Handles 8-bit mono/RGB/BGR(A), 16-bit mono/colour (percentile-stretched), Bayer and YUV 4:2:2
    encodings, row padding (``step``) and big-endian 16-bit data.

    The layout must agree with the encoding exactly: ``step // width`` is the encoding's bytes
    per pixel (row padding, which only aligns rows, stays below one byte per pixel) and
    ``data`` holds exactly ``step * height`` bytes. Bytes of another layout under a wrong label
    (rgb8 data labelled 16UC1, with a ``step`` that makes the size fit) would otherwise decode
    into a plausible-looking but geometrically wrong image.

    Args:
        msg: an Image-shaped message (``height``, ``width``, ``encoding``, ``is_bigendian``,
            ``step``, ``data``).

    Returns:
        (H, W, 3) uint8 RGB, C-contiguous.

    Raises:
        ImageConversionError: ``reason`` ``unsupported_encoding``, ``bad_size``,
            ``encoding_mismatch`` (``step`` / ``width`` is not the encoding's bytes per pixel),
            ``truncated`` (fewer than ``step * height`` bytes) or ``data_size_mismatch`` (more).
    """
    encoding = str(msg.encoding)
    spec = _RAW_ENCODINGS.get(encoding) or _RAW_ENCODINGS.get(encoding.lower())
    if spec is None:
        raise ImageConversionError(
            "unsupported_encoding",
            f"image encoding '{encoding}' is not supported "
            f"(supported: {', '.join(SUPPORTED_ENCODINGS)})",
        )
    channels, dtype, conversion = spec
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize  # YUV 4:2:2 counts as 2 one-byte channels
    if height <= 0 or width <= 0:
        raise ImageConversionError("bad_size", f"image has size {width}x{height}")
    if step < row_bytes:
        raise ImageConversionError(
            "bad_size", f"image step {step} B is less than width x pixel size = {row_bytes} B"
        )
    pixel_bytes = channels * itemsize
    if step // width != pixel_bytes:
        raise ImageConversionError(
            "encoding_mismatch",
            f"image step {step} B for {width} px is {step / width:.2f} B per pixel, but "
            f"'{encoding}' has {pixel_bytes} B per pixel (row padding must stay below one byte "
            "per pixel): the encoding, width or step is wrong",
        )
    if channels == 2 and width % 2:
        raise ImageConversionError(
            "bad_size", f"YUV 4:2:2 ('{encoding}') needs an even width, got {width} px"
        )
    if encoding.lower().startswith("bayer") and min(width, height) < 2:
        raise ImageConversionError(
            "bad_size", f"a Bayer image needs at least 2x2 pixels, got {width}x{height}"
        )
    buf = _as_uint8_buffer(msg.data)
    if buf.size < step * height:
        raise ImageConversionError(
            "truncated", f"image data has {buf.size} B, expected step x height = {step * height} B"
        )
    if buf.size > step * height:
        raise ImageConversionError(
            "data_size_mismatch",
            f"image data has {buf.size} B, more than step x height = {step * height} B: the "
            "height, step or encoding is wrong",
        )
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    if channels == 2:
        pixels = np.ascontiguousarray(rows).reshape(height, width, 2)
    else:
        big_endian = bool(getattr(msg, "is_bigendian", False))
        wire = np.dtype(dtype).newbyteorder(">" if big_endian else "<")
        pixels = np.ascontiguousarray(rows).view(wire).astype(dtype, copy=False)
        pixels = pixels.reshape(height, width, channels)
        if channels == 1:
            pixels = pixels[:, :, 0]
    return _to_rgb(pixels, conversion)


def compressed_image_to_rgb(msg: Any) -> UInt8Array:
    """``sensor_msgs/CompressedImage`` (JPEG, PNG, any format OpenCV reads) -> RGB pixels.

    Args:
        msg: a CompressedImage-shaped message (``format``, ``data``).

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        ImageConversionError: ``reason`` ``unsupported_encoding`` (depth streams) or
            ``decode_failed`` (corrupt or truncated bytes).
    """
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ImageConversionError(
            "unsupported_encoding", f"compressed depth images are not camera images ('{fmt}')"
        )
    buf = _as_uint8_buffer(msg.data)
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if decoded is None or decoded.size == 0:
        raise ImageConversionError(
            "decode_failed", f"could not decode {buf.size} B of compressed image ('{fmt}')"
        )
    if decoded.ndim == 2:
        return _to_rgb(decoded, cv2.COLOR_GRAY2RGB)
    if decoded.shape[2] == 4:
        return _to_rgb(decoded, cv2.COLOR_BGRA2RGB)
    return _to_rgb(decoded, cv2.COLOR_BGR2RGB)


def any_image_to_rgb(msg: Any) -> UInt8Array:
    """Image or CompressedImage -> (H, W, 3) uint8 RGB; see :func:`image_to_rgb`."""
    if is_compressed_image(msg):
        return compressed_image_to_rgb(msg)
    return image_to_rgb(msg)


# --------------------------------------------------------------------------- camera


def _field(msg: Any, *names: str) -> Any:
    for name in names:
        if hasattr(msg, name):
            return getattr(msg, name)
    raise CameraInfoError("missing_field", f"CameraInfo has none of the fields {names}")


def camera_from_camera_info(
    msg: Any, max_principal_point_offset_fraction: float = 0.5
) -> PinholeCamera:
    """``sensor_msgs/CameraInfo`` -> the core's pinhole camera of the images it describes.

    Binning and a region of interest are applied, so the returned intrinsics describe the
    published (binned, cropped) image.

    ``K`` must describe the calibrated ``width`` x ``height`` (REP-104: the full sensor, before
    binning and ROI): finite positive focal lengths and a principal point inside that image,
    no farther from its centre than ``max_principal_point_offset_fraction`` of its width
    (height). Real lenses put the principal point within a few per cent of the centre; a ``K``
    written for another resolution than the one declared (a K for 640x480 in a CameraInfo that
    says 1920x1440, or the reverse) puts it far off-centre or outside, and would lift every
    point wrongly without any other sign.

    Args:
        msg: CameraInfo-shaped message (``width``, ``height``, ``k``/``K``, ``d``/``D``,
            ``distortion_model``, optional ``binning_x/y`` and ``roi``).
        max_principal_point_offset_fraction: largest offset of the principal point from the
            image centre, as a fraction of the width (x) and height (y); 0.5 only requires it
            to lie inside the image.

    Raises:
        CameraInfoError: ``reason`` ``uncalibrated`` (zero focal length), ``principal_point``
            (outside the image or too far off-centre) or ``invalid``.
    """
    from cvgl_ros.core.camera import PinholeCamera

    width, height = int(msg.width), int(msg.height)
    k = [float(v) for v in _field(msg, "k", "K")]
    d = [float(v) for v in _field(msg, "d", "D")]
    model = str(getattr(msg, "distortion_model", "") or "")
    if len(k) != 9 or not all(math.isfinite(v) for v in k) or k[0] <= 0.0 or k[4] <= 0.0:
        raise CameraInfoError(
            "uncalibrated", f"CameraInfo K must hold a positive focal length, got {k}"
        )
    if width <= 0 or height <= 0:
        raise CameraInfoError("invalid", f"CameraInfo has size {width}x{height}")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    limit = min(0.5, float(max_principal_point_offset_fraction))
    off_x = abs(cx - 0.5 * (width - 1)) / width
    off_y = abs(cy - 0.5 * (height - 1)) / height
    if off_x > limit or off_y > limit:
        raise CameraInfoError(
            "principal_point",
            f"CameraInfo principal point ({cx:.1f}, {cy:.1f}) px is {100 * off_x:.0f} % / "
            f"{100 * off_y:.0f} % of the image off the centre of the declared {width}x{height} "
            f"(at most {100 * limit:.0f} %): K and width/height describe different image sizes",
        )
    roi: Any = getattr(msg, "roi", None)
    roi_size = (int(roi.width), int(roi.height)) if roi is not None else (0, 0)
    if min(roi_size) > 0 and roi_size != (width, height):
        cx -= float(roi.x_offset)
        cy -= float(roi.y_offset)
        width, height = roi_size
    bx = max(1, int(getattr(msg, "binning_x", 0) or 0))
    by = max(1, int(getattr(msg, "binning_y", 0) or 0))
    if bx > 1 or by > 1:
        fx, cx, width = fx / bx, cx / bx, width // bx
        fy, cy, height = fy / by, cy / by, height // by
    k_eff = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    if any(abs(v) > 0.0 for v in d) and model not in ("plumb_bob", "rational_polynomial", ""):
        raise CameraInfoError(
            "invalid", f"distortion model '{model}' is not supported (use plumb_bob)"
        )
    try:
        return PinholeCamera.from_camera_info(width, height, k_eff, d, model or "plumb_bob")
    except ValueError as exc:
        raise CameraInfoError(
            "invalid", f"CameraInfo rejected by the camera model: {exc}"
        ) from exc


def camera_for_image(
    camera: PinholeCamera, width_px: int, height_px: int, allow_resize: bool = False
) -> PinholeCamera:
    """The camera of an image: ``camera`` itself when the sizes agree.

    A CameraInfo describes the image it is published with (binning and ROI are applied by
    :func:`camera_from_camera_info`), so by default any other image size is refused: an
    unexplained factor between the two is as likely a CameraInfo for another resolution as a
    resized stream, and guessing wrong lifts every point wrongly. With ``allow_resize`` (a
    stream known to be resized downstream of an unchanged CameraInfo) the intrinsics are
    scaled when the aspect ratios agree.

    Args:
        camera: the CameraInfo's camera.
        width_px: image width, pixels.
        height_px: image height, pixels.
        allow_resize: scale the intrinsics to an image of the same aspect.

    Raises:
        CameraInfoError: ``reason`` ``size_mismatch`` when the sizes differ (and, with
            ``allow_resize``, the aspect ratios too).
    """
    from cvgl_ros.core.camera import PinholeCamera

    if (camera.width_px, camera.height_px) == (width_px, height_px):
        return camera
    if not allow_resize:
        raise CameraInfoError(
            "size_mismatch",
            f"image is {width_px}x{height_px} but its CameraInfo describes "
            f"{camera.width_px}x{camera.height_px} (after binning/ROI); publish a matching "
            "CameraInfo, or set camera_info_allow_resize for a resized stream",
        )
    sx = width_px / camera.width_px
    sy = height_px / camera.height_px
    if abs(sx - sy) > 0.01 * max(sx, sy):
        raise CameraInfoError(
            "size_mismatch",
            f"image is {width_px}x{height_px} but CameraInfo describes "
            f"{camera.width_px}x{camera.height_px}",
        )
    return PinholeCamera(
        width_px=width_px,
        height_px=height_px,
        fx_px=camera.fx_px * sx,
        fy_px=camera.fy_px * sy,
        cx_px=(camera.cx_px + 0.5) * sx - 0.5,
        cy_px=(camera.cy_px + 0.5) * sy - 0.5,
        distortion=camera.distortion,
    )


# --------------------------------------------------------------------------- GNSS


def _clip_covariance(cov: FloatArray, min_sigma_m: float) -> FloatArray:
    """Symmetrise and floor the eigenvalues of a 2x2 covariance at ``min_sigma_m**2``."""
    sym = 0.5 * (cov + cov.T)
    w, v = np.linalg.eigh(sym)
    w = np.maximum(w, min_sigma_m**2)
    out: FloatArray = (v * w) @ v.T
    return out


def gnss_prior_from_navsatfix(
    msg: Any, default_sigma_m: float, min_sigma_m: float = 0.5
) -> GnssPrior:
    """``sensor_msgs/NavSatFix`` -> the core's GNSS prior.

    The reported covariance is used when its type says it is known or approximated and it is
    finite and positive definite; otherwise the receiver gets ``default_sigma_m`` per axis.

    Args:
        msg: NavSatFix-shaped message.
        default_sigma_m: horizontal standard deviation (m) assumed when the covariance is
            unknown or unusable.
        min_sigma_m: floor of the horizontal standard deviation (m): receivers claiming
            centimetres would make the prior gate reject good poses.

    Raises:
        FixRejectedError: ``reason`` ``no_fix`` (status NO_FIX), ``nan_fix`` (non-finite
            lat/lon) or ``out_of_range``.
    """
    status = int(getattr(getattr(msg, "status", None), "status", const.NAVSAT_STATUS_FIX))
    if status < const.NAVSAT_STATUS_FIX:
        raise FixRejectedError("no_fix", f"NavSatFix status {status} (NO_FIX)")
    lat, lon = float(msg.latitude), float(msg.longitude)
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise FixRejectedError("nan_fix", f"NavSatFix lat/lon not finite: ({lat}, {lon})")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise FixRejectedError("out_of_range", f"NavSatFix lat/lon out of range: ({lat}, {lon})")
    cov_type = int(getattr(msg, "position_covariance_type", const.COVARIANCE_TYPE_UNKNOWN))
    raw = np.asarray(list(getattr(msg, "position_covariance", [0.0] * 9)), dtype=np.float64)
    cov = np.eye(2) * default_sigma_m**2
    if cov_type != const.COVARIANCE_TYPE_UNKNOWN and raw.size == 9 and np.all(np.isfinite(raw)):
        m = raw.reshape(3, 3)[:2, :2].copy()
        if cov_type == const.COVARIANCE_TYPE_DIAGONAL_KNOWN:
            m = np.diag(np.diag(m))
        m = 0.5 * (m + m.T)
        if np.all(np.linalg.eigvalsh(m) > 0.0):
            cov = m
    alt = float(getattr(msg, "altitude", math.nan))
    alt_var = None
    if cov_type != const.COVARIANCE_TYPE_UNKNOWN and raw.size == 9 and math.isfinite(raw[8]):
        alt_var = float(raw[8]) if raw[8] > 0.0 else None
    return GnssPrior(
        lat_deg=lat,
        lon_deg=lon,
        cov_en_m2=_clip_covariance(cov, min_sigma_m),
        stamp_s=header_stamp_s(msg),
        alt_m=alt if math.isfinite(alt) else None,
        alt_var_m2=alt_var if math.isfinite(alt) else None,
    )


def extrinsics_from_transform(msg: Any) -> CameraExtrinsics:
    """``geometry_msgs/TransformStamped`` (or ``Transform``) ``base <- camera`` -> extrinsics.

    The transform TF returns for ``lookup_transform(base_frame, camera_frame, ...)``: its
    translation is the camera's origin in the base frame, its rotation ``base_from_camera``.

    Raises:
        cvgl_ros.core.errors.InvalidInputError: a non-finite or zero rotation or translation.
    """
    from cvgl_ros.core.attitude import rotation_from_quaternion_xyzw
    from cvgl_ros.core.extrinsics import CameraExtrinsics

    tf = getattr(msg, "transform", msg)
    t, q = tf.translation, tf.rotation
    return CameraExtrinsics(
        rotation_from_quaternion_xyzw(quaternion_xyzw_from_msg(q)),
        np.array([float(t.x), float(t.y), float(t.z)]),
    )


# --------------------------------------------------------------------------- IMU


def quaternion_xyzw_from_msg(q: Any) -> tuple[float, float, float, float]:
    """``geometry_msgs/Quaternion`` -> (x, y, z, w) floats."""
    return float(q.x), float(q.y), float(q.z), float(q.w)


def imu_orientation_xyzw(msg: Any) -> tuple[float, float, float, float] | None:
    """Orientation of an ``sensor_msgs/Imu`` as a unit quaternion, or None when absent.

    REP-145: ``orientation_covariance[0] == -1`` means the IMU gives no orientation.
    """
    cov = list(getattr(msg, "orientation_covariance", [0.0] * 9))
    if cov and float(cov[0]) == -1.0:
        return None
    q = np.asarray(quaternion_xyzw_from_msg(msg.orientation), dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if not math.isfinite(norm) or abs(norm - 1.0) > 0.1:
        return None
    q /= norm
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


def imu_yaw_sigma_rad(msg: Any, default_sigma_rad: float) -> float:
    """Standard deviation of the IMU yaw from ``orientation_covariance[8]`` when reported."""
    cov = list(getattr(msg, "orientation_covariance", []))
    if len(cov) == 9 and math.isfinite(float(cov[8])) and float(cov[8]) > 0.0:
        return math.sqrt(float(cov[8]))
    return default_sigma_rad


# --------------------------------------------------------------------------- core -> messages


def _checked_cov3(cov_en_yaw: FloatArray) -> FloatArray:
    cov = np.asarray(cov_en_yaw, dtype=np.float64)
    if cov.shape != (3, 3) or not np.all(np.isfinite(cov)):
        raise ValueError(f"cov_en_yaw must be a finite (3, 3) array, got {cov!r}")
    cov = 0.5 * (cov + cov.T)
    if np.min(np.linalg.eigvalsh(cov)) < -1e-12 * max(1.0, float(np.max(np.abs(cov)))):
        raise ValueError(f"cov_en_yaw is not positive semi-definite: {cov.tolist()}")
    floored = cov.copy()
    np.fill_diagonal(floored, np.maximum(np.diag(cov), const.MIN_VARIANCE))
    return floored


def pose_covariance_6x6(
    cov_en_yaw: FloatArray, unobserved_variance: float = const.UNOBSERVED_VARIANCE
) -> list[float]:
    """(east, north, yaw) covariance -> the 36 row-major values of a ROS pose covariance.

    Order (x, y, z, rot x, rot y, rot z) = (east, north, up, roll, pitch, yaw) in ``map``;
    z, roll and pitch, which this node does not measure, get ``unobserved_variance``; no
    variance is below :data:`~cvgl_ros.ros.constants.MIN_VARIANCE`.

    Raises:
        ValueError: when the covariance is not finite or not positive semi-definite.
    """
    cov = _checked_cov3(cov_en_yaw)
    out = np.zeros((6, 6), dtype=np.float64)
    idx = (0, 1, 5)
    for a, i in enumerate(idx):
        for b, j in enumerate(idx):
            out[i, j] = cov[a, b]
    for i in (2, 3, 4):
        out[i, i] = unobserved_variance
    return [float(v) for v in out.reshape(-1)]


def navsat_covariance_3x3(
    cov_en_yaw: FloatArray, altitude_var_m2: float = const.UNOBSERVED_VARIANCE
) -> list[float]:
    """(east, north, yaw) covariance -> NavSatFix ``position_covariance`` (ENU, m^2, row-major),
    with ``altitude_var_m2`` for the up axis (uncorrelated with east/north)."""
    cov = _checked_cov3(cov_en_yaw)
    out = np.zeros((3, 3), dtype=np.float64)
    out[:2, :2] = cov[:2, :2]
    out[2, 2] = max(float(altitude_var_m2), const.MIN_VARIANCE)
    return [float(v) for v in out.reshape(-1)]


def fix_altitude(prior: GnssPrior | None, default_altitude_m: float) -> tuple[float, float]:
    """The altitude ``~/fix`` reports and its variance: (metres, m^2), both finite.

    The node does not measure altitude. It passes on the GNSS prior's ellipsoidal altitude, with
    the receiver's variance (:data:`~cvgl_ros.ros.constants.UNOBSERVED_VARIANCE` when it gave
    none); without one (gpsd reporting no height above the ellipsoid, a NavSatFix with NaN
    altitude) it reports ``default_altitude_m`` with that large variance. Never NaN:
    robot_localization's navsat_transform drops fixes whose altitude is NaN.
    """
    if prior is not None and prior.alt_m is not None:
        var = prior.alt_var_m2 if prior.alt_var_m2 is not None else const.UNOBSERVED_VARIANCE
        return float(prior.alt_m), float(var)
    return float(default_altitude_m), const.UNOBSERVED_VARIANCE


@dataclass(frozen=True)
class NavSatFixFields:
    """The content of the ``~/fix`` NavSatFix of one OK estimate (message-flavour free).

    Attributes:
        status: ``NavSatStatus.status``: ``STATUS_FIX`` (a valid, unaugmented fix).
        service: ``NavSatStatus.service`` bitmask: the input fixes' when they reported one,
            else ``SERVICE_GPS``.
        latitude_deg: WGS84 latitude of ``base_link``, degrees.
        longitude_deg: WGS84 longitude of ``base_link``, degrees.
        altitude_m: WGS84 ellipsoidal altitude (see :func:`fix_altitude`), metres.
        position_covariance: 9 row-major values, ENU, m^2.
        position_covariance_type: ``COVARIANCE_TYPE_KNOWN`` (east/north correlated) or
            ``COVARIANCE_TYPE_DIAGONAL_KNOWN`` (no correlation).
    """

    status: int
    service: int
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    position_covariance: tuple[float, ...]
    position_covariance_type: int


def navsat_fix_fields(
    estimate: PoseEstimate,
    altitude_m: float,
    altitude_var_m2: float = const.UNOBSERVED_VARIANCE,
    service: int = const.NAVSAT_SERVICE_GPS,
) -> NavSatFixFields:
    """What ``~/fix`` says for an OK estimate (see :class:`NavSatFixFields`).

    Raises:
        ValueError: a non-OK estimate, a non-finite position or altitude, or an unusable
            covariance.
    """
    if not estimate.ok:
        raise ValueError(f"refusing to publish a fix with status {estimate.status.value}")
    if not (math.isfinite(estimate.lat_deg) and math.isfinite(estimate.lon_deg)):
        raise ValueError("refusing to publish a non-finite fix")
    if not (math.isfinite(altitude_m) and math.isfinite(altitude_var_m2)):
        raise ValueError(f"the fix altitude must be finite, got {altitude_m} ({altitude_var_m2})")
    cov = navsat_covariance_3x3(estimate.cov_en_yaw, altitude_var_m2)
    off_diagonal = (cov[1], cov[2], cov[3], cov[5], cov[6], cov[7])
    cov_type = (
        const.COVARIANCE_TYPE_KNOWN
        if any(v != 0.0 for v in off_diagonal)
        else const.COVARIANCE_TYPE_DIAGONAL_KNOWN
    )
    return NavSatFixFields(
        status=const.NAVSAT_STATUS_FIX,
        service=int(service) if service > 0 else const.NAVSAT_SERVICE_GPS,
        latitude_deg=float(estimate.lat_deg),
        longitude_deg=float(estimate.lon_deg),
        altitude_m=float(altitude_m),
        position_covariance=tuple(cov),
        position_covariance_type=cov_type,
    )


def _set_stamp(
    header: Any, stamp_s: float, frame_id: str, stamp: tuple[int, int] | None = None
) -> None:
    header.stamp.sec, header.stamp.nanosec = (
        stamp if stamp is not None else s_to_sec_nanosec(stamp_s)
    )
    header.frame_id = frame_id


def build_pose_msg(
    estimate: PoseEstimate, frame_id: str, stamp: tuple[int, int] | None = None
) -> Any:
    """An OK estimate -> ``geometry_msgs/PoseWithCovarianceStamped`` in ``frame_id``.

    The message is stamped with ``stamp`` (the image's exact (sec, nanosec)) when given, else
    with ``estimate.stamp_s``. Position is ``base_link``'s (east, north) in the map ENU frame
    (the pipeline moved the estimate from the camera to the base), z = 0; orientation is the
    body yaw. The message has no child frame: its child is ``base_link`` by convention.

    Raises:
        ValueError: for a non-OK estimate or an unusable covariance.
    """
    from geometry_msgs.msg import PoseWithCovarianceStamped

    if not estimate.ok:
        raise ValueError(f"refusing to publish a pose with status {estimate.status.value}")
    if not all(
        math.isfinite(v) for v in (estimate.east_m, estimate.north_m, estimate.yaw_enu_rad)
    ):
        raise ValueError("refusing to publish a non-finite pose")
    msg = PoseWithCovarianceStamped()
    _set_stamp(msg.header, estimate.stamp_s, frame_id, stamp)
    msg.pose.pose.position.x = float(estimate.east_m)
    msg.pose.pose.position.y = float(estimate.north_m)
    msg.pose.pose.position.z = 0.0
    q = quaternion_xyzw_from_yaw(estimate.yaw_enu_rad)
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = q
    msg.pose.covariance = pose_covariance_6x6(estimate.cov_en_yaw)
    return msg


def build_fix_msg(
    estimate: PoseEstimate,
    frame_id: str,
    altitude_m: float,
    stamp: tuple[int, int] | None = None,
    *,
    altitude_var_m2: float = const.UNOBSERVED_VARIANCE,
    service: int = const.NAVSAT_SERVICE_GPS,
) -> Any:
    """An OK estimate -> ``sensor_msgs/NavSatFix`` (fields: :func:`navsat_fix_fields`).

    Args:
        estimate: an OK pose estimate (lat/lon of ``base_link``).
        frame_id: frame of the measured point (``base_frame``, unless ``fix_frame_id``).
        altitude_m: WGS84 ellipsoidal altitude to report (:func:`fix_altitude`), metres.
        stamp: the image's exact (sec, nanosec); ``estimate.stamp_s`` when None.
        altitude_var_m2: variance of ``altitude_m``, m^2.
        service: ``NavSatStatus.service`` of the input fixes (0 = unknown: GPS).

    Raises:
        ValueError: see :func:`navsat_fix_fields`.
    """
    from sensor_msgs.msg import NavSatFix

    fields = navsat_fix_fields(estimate, altitude_m, altitude_var_m2, service)
    msg = NavSatFix()
    _set_stamp(msg.header, estimate.stamp_s, frame_id, stamp)
    msg.status.status = fields.status
    msg.status.service = fields.service
    msg.latitude = fields.latitude_deg
    msg.longitude = fields.longitude_deg
    msg.altitude = fields.altitude_m
    msg.position_covariance = list(fields.position_covariance)
    msg.position_covariance_type = fields.position_covariance_type
    return msg


@dataclass(frozen=True)
class DiagnosticReport:
    """One ``diagnostic_msgs/DiagnosticStatus`` worth of content.

    Attributes:
        name: status name, e.g. ``"cvgl_node: localization"``.
        level: one of the ``DIAG_*`` levels in :mod:`cvgl_ros.ros.constants`.
        message: one-line summary.
        values: key -> value pairs (stringified when built).
    """

    name: str
    level: int
    message: str
    values: Mapping[str, object]


def build_diagnostic_array(stamp_s: float, reports: Sequence[DiagnosticReport]) -> Any:
    """Reports -> ``diagnostic_msgs/DiagnosticArray`` stamped ``stamp_s``."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    array = DiagnosticArray()
    array.header.stamp.sec, array.header.stamp.nanosec = s_to_sec_nanosec(stamp_s)
    for report in reports:
        status = DiagnosticStatus()
        status.level = bytes([report.level])
        status.name = report.name
        status.message = report.message
        status.hardware_id = const.DIAGNOSTIC_HARDWARE_ID
        status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in report.values.items()]
        array.status.append(status)
    return array


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def build_image_msg(
    rgb: UInt8Array, stamp_s: float, frame_id: str, stamp: tuple[int, int] | None = None
) -> Any:
    """(H, W, 3) uint8 RGB -> ``sensor_msgs/Image`` (``rgb8``)."""
    from sensor_msgs.msg import Image

    pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"overlay must be (H, W, 3) uint8, got {pixels.shape}")
    msg = Image()
    _set_stamp(msg.header, stamp_s, frame_id, stamp)
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = int(pixels.shape[1] * 3)
    msg.data = pixels.tobytes()
    return msg
