"""Message <-> core conversions, on duck-typed messages (no ROS needed) and ROS messages."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvgl_ros.core.attitude import yaw_from_quaternion_xyzw
from cvgl_ros.core.types import PoseEstimate, PoseStatus
from cvgl_ros.ros import constants as const
from cvgl_ros.ros import convert
from cvgl_ros.ros.errors import CameraInfoError, FixRejectedError, ImageConversionError

NS = SimpleNamespace


def _header(stamp_s: float = 12.5, frame_id: str = "cam") -> NS:
    sec, nanosec = convert.s_to_sec_nanosec(stamp_s)
    return NS(stamp=NS(sec=sec, nanosec=nanosec), frame_id=frame_id)


def _image(pixels: np.ndarray, encoding: str, step: int | None = None, **kw: Any) -> NS:
    h, w = pixels.shape[:2]
    row = pixels.reshape(h, -1).view(np.uint8)
    step = step or row.shape[1]
    padded = np.zeros((h, step), dtype=np.uint8)
    padded[:, : row.shape[1]] = row
    return NS(
        header=_header(),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=kw.get("is_bigendian", 0),
        step=step,
        data=kw.get("data", padded.tobytes()),
    )


RGB = np.random.default_rng(3).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)


class TestImageToRgb:
    def test_rgb8_bgr8_rgba8_bgra8(self) -> None:
        np.testing.assert_array_equal(convert.image_to_rgb(_image(RGB, "rgb8")), RGB)
        np.testing.assert_array_equal(convert.image_to_rgb(_image(RGB[:, :, ::-1], "bgr8")), RGB)
        alpha = np.full((6, 8, 1), 77, np.uint8)
        rgba = np.concatenate([RGB, alpha], axis=2)
        bgra = np.concatenate([RGB[:, :, ::-1], alpha], axis=2)
        np.testing.assert_array_equal(convert.image_to_rgb(_image(rgba, "rgba8")), RGB)
        np.testing.assert_array_equal(convert.image_to_rgb(_image(bgra, "bgra8")), RGB)

    def test_mono8_becomes_grey_rgb(self) -> None:
        mono = RGB[:, :, 0].copy()
        out = convert.image_to_rgb(_image(mono, "mono8"))
        assert out.shape == (6, 8, 3) and out.dtype == np.uint8
        for c in range(3):
            np.testing.assert_array_equal(out[:, :, c], mono)

    def test_row_padding_is_ignored(self) -> None:
        out = convert.image_to_rgb(_image(RGB, "rgb8", step=8 * 3 + 5))
        np.testing.assert_array_equal(out, RGB)

    @pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
    @pytest.mark.parametrize("big_endian", [False, True])
    def test_16bit_is_stretched(self, encoding: str, big_endian: bool) -> None:
        ramp = np.linspace(1000, 1400, 6 * 8).reshape(6, 8).astype(np.uint16)
        wire = ramp.astype(">u2" if big_endian else "<u2")
        out = convert.image_to_rgb(_image(wire, encoding, is_bigendian=int(big_endian)))
        grey = out[:, :, 0].astype(int)
        # Narrow 16-bit range stretched over most of 0..255, order preserved.
        assert grey.max() - grey.min() > 200
        assert np.all(np.diff(grey.reshape(-1)) >= 0)

    def test_constant_16bit_image_does_not_divide_by_zero(self) -> None:
        flat = np.full((4, 4), 512, np.uint16)
        out = convert.image_to_rgb(_image(flat, "mono16"))
        assert out.shape == (4, 4, 3) and np.all(out == 0)

    def test_bayer_and_yuv422(self) -> None:
        bayer = np.random.default_rng(0).integers(0, 256, (6, 8), np.uint8)
        assert convert.image_to_rgb(_image(bayer, "bayer_rggb8")).shape == (6, 8, 3)
        uyvy = np.full((6, 8, 2), 128, np.uint8)
        uyvy[:, :, 1] = 90  # Y
        out = convert.image_to_rgb(_image(uyvy, "yuv422"))
        assert out.shape == (6, 8, 3)
        # Neutral chroma is grey; OpenCV maps video-range luma (16..235) to 0..255.
        assert np.all(out == out[:1, :1, :1])
        assert abs(int(out[0, 0, 0]) - round((90 - 16) * 255 / 219)) <= 2

    def test_numpy_and_array_data_are_accepted(self) -> None:
        msg = _image(RGB, "rgb8")
        msg.data = np.frombuffer(msg.data, np.uint8).copy()  # rosbags gives numpy arrays
        np.testing.assert_array_equal(convert.image_to_rgb(msg), RGB)

    def test_unknown_encoding_is_a_counted_kind_of_error(self) -> None:
        with pytest.raises(ImageConversionError) as info:
            convert.image_to_rgb(_image(RGB, "32FC1"))
        assert info.value.reason == "unsupported_encoding" and "32FC1" in str(info.value)

    def test_truncated_and_bad_sizes(self) -> None:
        msg = _image(RGB, "rgb8")
        msg.data = msg.data[:-10]
        with pytest.raises(ImageConversionError) as info:
            convert.image_to_rgb(msg)
        assert info.value.reason == "truncated"
        short_step = _image(RGB, "rgb8")
        short_step.step = 10
        with pytest.raises(ImageConversionError) as info:
            convert.image_to_rgb(short_step)
        assert info.value.reason == "bad_size"
        empty = _image(RGB, "rgb8")
        empty.width = 0
        with pytest.raises(ImageConversionError):
            convert.image_to_rgb(empty)


# Bytes per pixel of every supported encoding, and a valid pixel array for it.
_PIXEL_BYTES = {
    e: convert._RAW_ENCODINGS[e][0] * np.dtype(convert._RAW_ENCODINGS[e][1]).itemsize
    for e in convert.SUPPORTED_ENCODINGS
}


def _pixels_for(encoding: str, h: int = 6, w: int = 8) -> np.ndarray:
    channels, dtype, _ = convert._RAW_ENCODINGS[encoding]
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    pixels = rng.integers(0, int(info.max) + 1, size=(h, w, channels), dtype=dtype)
    return pixels[:, :, 0] if channels == 1 else pixels


class TestImageLayoutAgainstEncoding:
    """The layout (step, width, data length) must agree with the encoding exactly."""

    @pytest.mark.parametrize("encoding", convert.SUPPORTED_ENCODINGS)
    def test_every_encoding_decodes_exact_and_padded_rows(self, encoding: str) -> None:
        pixels = _pixels_for(encoding)
        assert convert.image_to_rgb(_image(pixels, encoding)).shape == (6, 8, 3)
        row = 8 * _PIXEL_BYTES[encoding]
        padded = convert.image_to_rgb(_image(pixels, encoding, step=row + 7))  # 7 < width
        np.testing.assert_array_equal(padded, convert.image_to_rgb(_image(pixels, encoding)))

    @pytest.mark.parametrize("true_encoding", convert.SUPPORTED_ENCODINGS)
    @pytest.mark.parametrize("label", convert.SUPPORTED_ENCODINGS)
    def test_bytes_under_a_label_of_another_pixel_size_are_refused(
        self, true_encoding: str, label: str
    ) -> None:
        if _PIXEL_BYTES[label] == _PIXEL_BYTES[true_encoding]:
            return  # same layout (bgr8 vs rgb8, mono16 vs 16UC1): nothing to detect
        msg = _image(_pixels_for(true_encoding), true_encoding)
        msg.encoding = label  # step and data stay those of the true encoding
        with pytest.raises(ImageConversionError) as info:
            convert.image_to_rgb(msg)
        assert info.value.reason in ("encoding_mismatch", "bad_size")

    def test_rgb8_labelled_16uc1_is_refused(self) -> None:
        """The field case: rgb8 bytes labelled 16UC1, whose step passes the old size check."""
        msg = _image(RGB, "rgb8")
        msg.encoding = "16UC1"
        with pytest.raises(ImageConversionError) as info:
            convert.image_to_rgb(msg)
        assert info.value.reason == "encoding_mismatch" and "16UC1" in str(info.value)
        # ... and with the step rewritten to fit 16UC1, the data is too long.
        msg.step = 2 * RGB.shape[1]
        with pytest.raises(ImageConversionError) as info:
            convert.image_to_rgb(msg)
        assert info.value.reason == "data_size_mismatch"

    def test_wrong_width_height_and_extra_bytes_are_refused(self) -> None:
        narrow = _image(RGB, "rgb8")
        narrow.width = 4  # step 24 B for 4 px = 6 B per pixel
        short = _image(RGB, "rgb8")
        short.height = 3  # twice the data step x height promises
        extra = _image(RGB, "rgb8")
        extra.data = extra.data + b"\0" * 5
        for msg, reason in (
            (narrow, "encoding_mismatch"),
            (short, "data_size_mismatch"),
            (extra, "data_size_mismatch"),
        ):
            with pytest.raises(ImageConversionError) as info:
                convert.image_to_rgb(msg)
            assert info.value.reason == reason

    def test_odd_width_yuv422_is_a_bad_size(self) -> None:
        uyvy = np.full((4, 5, 2), 128, np.uint8)
        with pytest.raises(ImageConversionError) as info:
            convert.image_to_rgb(_image(uyvy, "uyvy"))
        assert info.value.reason == "bad_size"


class TestCompressed:
    @pytest.mark.parametrize("ext", [".png", ".jpg"])
    def test_decodes_png_and_jpeg(self, ext: str) -> None:
        big = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_NEAREST)
        ok, buf = cv2.imencode(ext, big[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
        assert ok
        msg = NS(header=_header(), format=ext[1:], data=buf.tobytes())
        assert convert.is_compressed_image(msg)
        out = convert.any_image_to_rgb(msg)
        assert out.shape == (48, 64, 3)
        tol = 0 if ext == ".png" else 40
        assert np.abs(out.astype(int) - big.astype(int)).mean() <= max(tol / 4, 0.0)

    def test_16bit_png(self) -> None:
        ramp = np.linspace(0, 4000, 64).reshape(8, 8).astype(np.uint16)
        _, buf = cv2.imencode(".png", ramp)
        out = convert.compressed_image_to_rgb(NS(format="png", data=buf.tobytes()))
        assert out.shape == (8, 8, 3) and out.max() > 200

    def test_corrupt_bytes_and_depth_are_rejected(self) -> None:
        with pytest.raises(ImageConversionError) as info:
            convert.compressed_image_to_rgb(NS(format="jpeg", data=b"\xff\xd8garbage"))
        assert info.value.reason == "decode_failed"
        with pytest.raises(ImageConversionError):
            convert.compressed_image_to_rgb(NS(format="jpeg", data=b""))
        with pytest.raises(ImageConversionError) as info:
            convert.compressed_image_to_rgb(NS(format="16UC1; compressedDepth", data=b"x"))
        assert info.value.reason == "unsupported_encoding"


def _info(**kw: Any) -> NS:
    base: dict[str, Any] = {
        "header": _header(),
        "width": 640,
        "height": 480,
        "k": [500.0, 0.0, 319.5, 0.0, 510.0, 239.5, 0.0, 0.0, 1.0],
        "d": [0.1, -0.05, 0.0, 0.0, 0.0],
        "distortion_model": "plumb_bob",
        "binning_x": 0,
        "binning_y": 0,
        "roi": NS(x_offset=0, y_offset=0, width=0, height=0),
    }
    base.update(kw)
    return NS(**base)


class TestCameraInfo:
    def test_pinhole_from_ros2_and_ros1_field_names(self) -> None:
        cam = convert.camera_from_camera_info(_info())
        assert (cam.width_px, cam.height_px, cam.fx_px, cam.fy_px) == (640, 480, 500.0, 510.0)
        assert (cam.cx_px, cam.cy_px) == (319.5, 239.5)
        assert cam.distortion[:2] == (0.1, -0.05)
        ros1 = NS(width=640, height=480, K=_info().k, D=[0.0] * 5, distortion_model="plumb_bob")
        assert convert.camera_from_camera_info(ros1).fx_px == 500.0

    def test_binning_and_roi(self) -> None:
        cam = convert.camera_from_camera_info(_info(binning_x=2, binning_y=2))
        assert (cam.width_px, cam.height_px, cam.fx_px, cam.cx_px) == (320, 240, 250.0, 159.75)
        roi = NS(x_offset=100, y_offset=50, width=200, height=100)
        cam = convert.camera_from_camera_info(_info(roi=roi))
        assert (cam.width_px, cam.height_px, cam.cx_px, cam.cy_px) == (200, 100, 219.5, 189.5)

    def test_uncalibrated_camera_is_rejected(self) -> None:
        with pytest.raises(CameraInfoError) as info:
            convert.camera_from_camera_info(_info(k=[0.0] * 9))
        assert info.value.reason == "uncalibrated"
        with pytest.raises(CameraInfoError):
            convert.camera_from_camera_info(_info(distortion_model="equidistant"))

    def test_k_for_another_image_size_is_refused(self) -> None:
        """The field case: declared 3x the image, K for the real size (and variants)."""
        for bad in (
            _info(width=1920, height=1440),  # K of 640x480 in a 1920x1440 CameraInfo
            _info(k=[250.0, 0, 159.75, 0, 255.0, 119.75, 0, 0, 1]),  # K of 320x240
            _info(k=[1000.0, 0, 639.5, 0, 1020.0, 479.5, 0, 0, 1]),  # K of 1280x960
            _info(k=[500.0, 0, -20.0, 0, 510.0, 239.5, 0, 0, 1]),  # outside the image
        ):
            with pytest.raises(CameraInfoError) as info:
                convert.camera_from_camera_info(bad, max_principal_point_offset_fraction=0.2)
            assert info.value.reason == "principal_point"
        # Only "inside the image" with the loosest limit; a K of 320x240 then passes.
        loose = _info(k=[250.0, 0, 159.75, 0, 255.0, 119.75, 0, 0, 1])
        assert convert.camera_from_camera_info(loose, 0.5).cx_px == 159.75
        for k in ([math.nan, 0, 319.5, 0, 510.0, 239.5, 0, 0, 1], [-500.0] + [0.0] * 8):
            with pytest.raises(CameraInfoError) as info:
                convert.camera_from_camera_info(_info(k=k))
            assert info.value.reason == "uncalibrated"

    def test_camera_follows_a_resized_stream_only_when_allowed(self) -> None:
        cam = convert.camera_from_camera_info(_info())
        half = convert.camera_for_image(cam, 320, 240, allow_resize=True)
        assert (half.fx_px, half.cx_px) == (250.0, 159.5)
        assert convert.camera_for_image(cam, 640, 480) is cam
        with pytest.raises(CameraInfoError) as info:
            convert.camera_for_image(cam, 640, 200, allow_resize=True)
        assert info.value.reason == "size_mismatch"
        # By default an unexplained size factor is refused, whatever the aspect.
        with pytest.raises(CameraInfoError) as info:
            convert.camera_for_image(cam, 320, 240)
        assert info.value.reason == "size_mismatch" and "camera_info_allow_resize" in str(
            info.value
        )


def _fix(**kw: Any) -> NS:
    base: dict[str, Any] = {
        "header": _header(),
        "status": NS(status=0, service=1),
        "latitude": 47.0,
        "longitude": 8.0,
        "altitude": 400.0,
        "position_covariance": [4.0, 1.0, 0.0, 1.0, 9.0, 0.0, 0.0, 0.0, 16.0],
        "position_covariance_type": const.COVARIANCE_TYPE_KNOWN,
    }
    base.update(kw)
    return NS(**base)


class TestNavSatFix:
    def test_known_covariance_is_used(self) -> None:
        prior = convert.gnss_prior_from_navsatfix(_fix(), default_sigma_m=10.0)
        assert (prior.lat_deg, prior.lon_deg, prior.alt_m) == (47.0, 8.0, 400.0)
        assert prior.alt_var_m2 == 16.0
        np.testing.assert_allclose(prior.cov_en_m2, [[4.0, 1.0], [1.0, 9.0]])
        assert prior.stamp_s == pytest.approx(12.5)

    def test_diagonal_known_drops_off_diagonal(self) -> None:
        msg = _fix(position_covariance_type=const.COVARIANCE_TYPE_DIAGONAL_KNOWN)
        prior = convert.gnss_prior_from_navsatfix(msg, 10.0)
        np.testing.assert_allclose(prior.cov_en_m2, np.diag([4.0, 9.0]))

    def test_unknown_or_unusable_covariance_gets_the_default(self) -> None:
        for msg in (
            _fix(position_covariance_type=const.COVARIANCE_TYPE_UNKNOWN),
            _fix(position_covariance=[math.nan] * 9),
            _fix(position_covariance=[-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0]),
        ):
            prior = convert.gnss_prior_from_navsatfix(msg, 10.0)
            np.testing.assert_allclose(prior.cov_en_m2, np.diag([100.0, 100.0]))

    def test_overconfident_covariance_is_floored(self) -> None:
        msg = _fix(position_covariance=[1e-6, 0, 0, 0, 1e-6, 0, 0, 0, 1e-6])
        prior = convert.gnss_prior_from_navsatfix(msg, 10.0, min_sigma_m=0.5)
        np.testing.assert_allclose(np.linalg.eigvalsh(prior.cov_en_m2), [0.25, 0.25])

    def test_no_fix_nan_and_out_of_range_are_rejected(self) -> None:
        cases = {
            "no_fix": _fix(status=NS(status=-1, service=1)),
            "nan_fix": _fix(latitude=math.nan),
            "out_of_range": _fix(longitude=200.0),
        }
        for reason, msg in cases.items():
            with pytest.raises(FixRejectedError) as info:
                convert.gnss_prior_from_navsatfix(msg, 10.0)
            assert info.value.reason == reason

    def test_nan_altitude_is_unknown(self) -> None:
        assert convert.gnss_prior_from_navsatfix(_fix(altitude=math.nan), 5.0).alt_m is None


class TestImu:
    def _imu(self, yaw: float, cov0: float = 0.01, cov8: float = 0.04) -> NS:
        return NS(
            header=_header(),
            orientation=NS(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)),
            orientation_covariance=[cov0, 0, 0, 0, 0.01, 0, 0, 0, cov8],
        )

    def test_orientation_yaw_and_sigma(self) -> None:
        q = convert.imu_orientation_xyzw(self._imu(0.8))
        assert q is not None
        assert yaw_from_quaternion_xyzw(q) == pytest.approx(0.8)
        assert convert.imu_yaw_sigma_rad(self._imu(0.8), 0.3) == pytest.approx(0.2)
        assert convert.imu_yaw_sigma_rad(self._imu(0.8, cov8=0.0), 0.3) == 0.3

    def test_missing_or_broken_orientation(self) -> None:
        assert convert.imu_orientation_xyzw(self._imu(0.0, cov0=-1.0)) is None
        broken = self._imu(0.0)
        broken.orientation = NS(x=0.0, y=0.0, z=0.0, w=0.0)
        assert convert.imu_orientation_xyzw(broken) is None


@given(st.floats(min_value=0.0, max_value=4e9, allow_nan=False))
def test_stamp_round_trip(stamp_s: float) -> None:
    sec, nanosec = convert.s_to_sec_nanosec(stamp_s)
    assert 0 <= nanosec < 1_000_000_000
    back = convert.stamp_to_s(NS(sec=sec, nanosec=nanosec))
    assert back == pytest.approx(stamp_s, abs=1e-6)
    assert convert.stamp_to_s(NS(secs=sec, nsecs=nanosec)) == back


COV3 = np.array([[0.5, 0.1, 0.01], [0.1, 0.8, -0.02], [0.01, -0.02, 0.003]])


class TestCovariances:
    def test_pose_covariance_layout(self) -> None:
        cov = np.asarray(convert.pose_covariance_6x6(COV3)).reshape(6, 6)
        idx = [0, 1, 5]
        np.testing.assert_allclose(cov[np.ix_(idx, idx)], COV3)
        for i in (2, 3, 4):
            assert cov[i, i] == const.UNOBSERVED_VARIANCE
        assert np.all(np.linalg.eigvalsh(cov) > 0.0)

    def test_zero_variances_are_floored_and_bad_ones_refused(self) -> None:
        cov = np.asarray(convert.pose_covariance_6x6(np.zeros((3, 3)))).reshape(6, 6)
        assert np.all(np.diag(cov) >= const.MIN_VARIANCE)
        with pytest.raises(ValueError):
            convert.pose_covariance_6x6(np.full((3, 3), math.nan))
        with pytest.raises(ValueError):
            convert.pose_covariance_6x6(np.diag([1.0, -1.0, 1.0]))
        with pytest.raises(ValueError):
            convert.pose_covariance_6x6(np.eye(2))

    def test_navsat_covariance(self) -> None:
        cov = np.asarray(convert.navsat_covariance_3x3(COV3)).reshape(3, 3)
        np.testing.assert_allclose(cov[:2, :2], COV3[:2, :2])
        assert cov[2, 2] == const.UNOBSERVED_VARIANCE


def _ok_estimate() -> PoseEstimate:
    return PoseEstimate(
        status=PoseStatus.OK,
        lat_deg=47.1,
        lon_deg=8.2,
        east_m=10.0,
        north_m=-4.0,
        yaw_enu_rad=1.2,
        cov_en_yaw=COV3,
        inliers=40,
        inlier_ratio=0.6,
        num_matches=66,
        stamp_s=1700000000.25,
    )


class TestRosMessageBuilders:
    def test_pose_message(self) -> None:
        pytest.importorskip("geometry_msgs")
        msg = convert.build_pose_msg(_ok_estimate(), "map")
        assert msg.header.frame_id == "map"
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1700000000, 250000000)
        assert (msg.pose.pose.position.x, msg.pose.pose.position.y) == (10.0, -4.0)
        assert 2 * math.atan2(msg.pose.pose.orientation.z, msg.pose.pose.orientation.w) == (
            pytest.approx(1.2)
        )
        with pytest.raises(ValueError, match="status"):
            convert.build_pose_msg(PoseEstimate(status=PoseStatus.NO_FIX), "map")

    def test_fix_message(self) -> None:
        pytest.importorskip("sensor_msgs")
        msg = convert.build_fix_msg(_ok_estimate(), "base_link", 412.5, altitude_var_m2=9.0)
        assert msg.position_covariance_type == const.COVARIANCE_TYPE_KNOWN
        assert (msg.latitude, msg.longitude, msg.altitude) == (47.1, 8.2, 412.5)
        assert (msg.status.status, msg.status.service) == (0, 1)  # STATUS_FIX, SERVICE_GPS
        assert msg.position_covariance[8] == 9.0
        assert msg.header.frame_id == "base_link"
        glonass = convert.build_fix_msg(_ok_estimate(), "base_link", 412.5, service=3)
        assert glonass.status.service == 3  # GPS | GLONASS, as the input fixes said

    def test_fix_altitude_is_never_nan(self) -> None:
        # gpsd without a height above the ellipsoid, or a NaN NavSatFix altitude: no alt_m.
        no_alt = convert.gnss_prior_from_navsatfix(_fix(altitude=math.nan), 5.0)
        assert convert.fix_altitude(no_alt, 431.0) == (431.0, const.UNOBSERVED_VARIANCE)
        assert convert.fix_altitude(None, 0.0) == (0.0, const.UNOBSERVED_VARIANCE)
        known = convert.gnss_prior_from_navsatfix(_fix(), 5.0)
        assert convert.fix_altitude(known, 431.0) == (400.0, 16.0)
        unknown_var = convert.gnss_prior_from_navsatfix(
            _fix(position_covariance_type=const.COVARIANCE_TYPE_UNKNOWN), 5.0
        )
        assert convert.fix_altitude(unknown_var, 431.0) == (400.0, const.UNOBSERVED_VARIANCE)

    def test_fix_fields_covariance_type(self) -> None:
        f = convert.navsat_fix_fields(_ok_estimate(), 10.0, 4.0)
        assert f.position_covariance_type == const.COVARIANCE_TYPE_KNOWN  # COV3 correlates e/n
        diagonal = dataclasses.replace(_ok_estimate(), cov_en_yaw=np.diag([1.0, 2.0, 0.01]))
        f = convert.navsat_fix_fields(diagonal, 10.0, 4.0)
        assert f.position_covariance_type == const.COVARIANCE_TYPE_DIAGONAL_KNOWN
        assert f.position_covariance == (1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 4.0)
        with pytest.raises(ValueError, match="altitude"):
            convert.navsat_fix_fields(_ok_estimate(), math.nan)
        with pytest.raises(ValueError, match="status"):
            convert.navsat_fix_fields(PoseEstimate(status=PoseStatus.NO_FIX), 0.0)

    def test_diagnostics_and_image_messages(self) -> None:
        pytest.importorskip("diagnostic_msgs")
        report = convert.DiagnosticReport("n: loc", const.DIAG_WARN, "meh", {"a": 1.23456, "b": 2})
        array = convert.build_diagnostic_array(5.5, [report])
        status = array.status[0]
        assert status.level == bytes([const.DIAG_WARN]) and status.message == "meh"
        assert {kv.key: kv.value for kv in status.values} == {"a": "1.235", "b": "2"}
        img = convert.build_image_msg(RGB, 1.0, "map")
        assert (img.height, img.width, img.step, img.encoding) == (6, 8, 24, "rgb8")
        np.testing.assert_array_equal(convert.image_to_rgb(img), RGB)
