"""The rclpy-free pipeline: routing of inputs, counters, and a real localization.

The fix and IMU buffers it uses are tested in test/unit/core (test_core_gnss, test_core_attitude).

Messages here are rosbags-deserialised types (what ``cvgl-ros replay`` feeds) or plain
namespaces, never rclpy messages.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.types import GnssPrior, PoseEstimate, PoseStatus
from cvgl_ros.ros.convert import s_to_sec_nanosec
from cvgl_ros.ros.params import configs_from_params
from cvgl_ros.ros.pipeline import Pipeline

NS = SimpleNamespace
LAT0, LON0 = 47.3977419, 8.5455938
ENU = LocalEnu(LAT0, LON0)


def _en(prior: GnssPrior) -> np.ndarray:
    e, n = ENU.to_en(prior.lat_deg, prior.lon_deg)
    return np.array([float(e), float(n)])


class FakeLocalizer:
    """Records the calls; answers OK at the prior's position (duck-typed Localizer)."""

    def __init__(self, raise_exc: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.map_origin: LocalEnu | None = None
        self.raise_exc = raise_exc
        self.matcher = self.depth = self.patches = None

    def localize(
        self,
        image: Any,
        camera: Any,
        prior: GnssPrior,
        gravity: Any,
        stamp_s: float,
        yaw_prior_rad: Any = None,
        yaw_prior_sigma_rad: Any = None,
        attitude_sigma_rad: Any = None,
    ) -> PoseEstimate:
        self.calls.append(
            dict(
                image=image,
                camera=camera,
                prior=prior,
                gravity=gravity,
                stamp_s=stamp_s,
                yaw=yaw_prior_rad,
                yaw_sigma=yaw_prior_sigma_rad,
                attitude_sigma=attitude_sigma_rad,
            )
        )
        if self.raise_exc:
            raise RuntimeError("boom")
        if self.map_origin is None:
            self.map_origin = LocalEnu(prior.lat_deg, prior.lon_deg)
        return PoseEstimate(
            status=PoseStatus.OK,
            lat_deg=prior.lat_deg,
            lon_deg=prior.lon_deg,
            east_m=0.0,
            north_m=0.0,
            yaw_enu_rad=0.0,
            cov_en_yaw=np.eye(3) * 0.1,
            inliers=30,
            inlier_ratio=0.5,
            num_matches=60,
            timings_s={"match": 0.01, "total": 0.02},
            stamp_s=stamp_s,
        )


def _pipeline(
    localizer: Any = None, node: dict[str, Any] | None = None, **params: Any
) -> tuple[Pipeline, FakeLocalizer]:
    """A pipeline around ``localizer`` from parameters (and internal node settings)."""
    loc = localizer or FakeLocalizer()
    configs = configs_from_params({"tiles.source": "/x.tif", **params})
    if node:
        configs = dataclasses.replace(configs, node=dataclasses.replace(configs.node, **node))
    return Pipeline(configs, loc), loc


def _header(stamp_s: float) -> NS:
    sec, nanosec = s_to_sec_nanosec(stamp_s)
    return NS(stamp=NS(sec=sec, nanosec=nanosec), frame_id="cam")


def _info(w: int = 32, h: int = 24) -> NS:
    return NS(
        header=_header(0.0),
        width=w,
        height=h,
        k=[30.0, 0, w / 2, 0, 30.0, h / 2, 0, 0, 1],
        d=[],
        distortion_model="",
    )


def _img(stamp_s: float, w: int = 32, h: int = 24, encoding: str = "rgb8") -> NS:
    data = np.full((h, w, 3), 120, np.uint8).tobytes()
    return NS(
        header=_header(stamp_s),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * 3,
        data=data,
    )


def _fix(stamp_s: float, lat: float = LAT0, lon: float = LON0, status: int = 0) -> NS:
    return NS(
        header=_header(stamp_s),
        status=NS(status=status, service=1),
        latitude=lat,
        longitude=lon,
        altitude=400.0,
        position_covariance=[4.0, 0, 0, 0, 4.0, 0, 0, 0, 9],
        position_covariance_type=2,
    )


class TestPipelineRouting:
    def test_failures_in_order_of_missing_inputs(self) -> None:
        p, loc = _pipeline()
        assert p.on_image(_img(10.0)).status is PoseStatus.NO_FIX
        p.on_fix(_fix(10.0))
        est = p.on_image(_img(10.1))
        assert est.status is PoseStatus.ERROR and "CameraInfo" in est.reasons[0]
        assert p.on_camera_info(_info())
        assert p.on_image(_img(10.2)).ok
        assert p.on_image(_img(30.0)).status is PoseStatus.STALE_FIX
        assert len(loc.calls) == 1 and loc.calls[0]["stamp_s"] == pytest.approx(10.2)
        snap = p.stats_snapshot()
        assert snap["images_in"] == 4 and snap["poses_ok"] == 1
        assert snap["failures"] == {"no_fix": 1, "error": 1, "stale_fix": 1}
        assert snap["last_failure_status"] == "stale_fix"
        assert snap["latency_mean_s"]["match"] == pytest.approx(0.01)
        assert snap["inliers_mean"] == 30.0

    def test_bad_messages_are_counted_not_raised(self) -> None:
        p, loc = _pipeline()
        p.on_camera_info(_info())
        assert not p.on_fix(_fix(10.0, lat=math.nan))
        assert not p.on_fix(_fix(10.0, status=-1))
        assert not p.on_fix(NS(header=_header(10.0)))  # malformed: no latitude
        assert not p.on_camera_info(NS(width=0))
        p.on_fix(_fix(10.0))
        assert p.on_image(_img(10.0, encoding="weird")).status is PoseStatus.BAD_IMAGE
        assert p.on_image(NS(header=_header(10.0), format="jpeg", data=b"xx")).status is (
            PoseStatus.BAD_IMAGE
        )
        assert p.on_image(NS()).status is PoseStatus.BAD_IMAGE  # no header at all
        skipped = p.stats_snapshot()["skipped"]
        assert skipped["fix:nan_fix"] == 1 and skipped["fix:no_fix"] == 1
        assert skipped["fix:malformed"] == 1
        assert skipped["image:unsupported_encoding"] == 1 and skipped["image:decode_failed"] == 1
        assert skipped["camera_info:malformed"] == 1
        assert not loc.calls

    def test_compressed_image_and_resized_stream(self) -> None:
        p, loc = _pipeline(node={"camera_info_allow_resize": True})
        p.on_camera_info(_info(64, 48))
        p.on_fix(_fix(5.0))
        _, buf = cv2.imencode(".jpg", np.full((24, 32, 3), 90, np.uint8))
        est = p.on_image(NS(header=_header(5.0), format="jpeg", data=buf.tobytes()))
        assert est.ok
        cam = loc.calls[0]["camera"]
        assert (cam.width_px, cam.fx_px) == (32, 15.0)  # CameraInfo at twice the size

    def test_prior_is_interpolated_to_the_image_stamp(self) -> None:
        p, loc = _pipeline()
        p.on_camera_info(_info())
        lat1, lon1 = ENU.to_wgs84(10.0, 0.0)
        p.on_fix(_fix(10.0))
        p.on_fix(_fix(11.0, float(lat1), float(lon1)))
        assert p.on_image(_img(10.5)).ok
        np.testing.assert_allclose(_en(loc.calls[0]["prior"]), [5.0, 0.0], atol=1e-3)

    def test_static_mount_and_imu_attitude(self) -> None:
        p, loc = _pipeline(use_imu=True, use_imu_yaw=True, camera_mount="nadir")
        p.on_camera_info(_info())
        p.on_fix(_fix(1.0))
        p.on_image(_img(1.0))  # no IMU yet: static nadir mount, inflated attitude sigma
        static = loc.calls[-1]["gravity"]
        np.testing.assert_allclose(static @ [0, 0, 1], [0, 0, -1], atol=1e-12)  # looks down
        assert loc.calls[-1]["yaw"] is None
        assert loc.calls[-1]["attitude_sigma"] == pytest.approx(0.05)
        roll = 0.1
        for stamp in (1.0, 1.2):
            imu = NS(
                header=_header(stamp),
                orientation=NS(x=math.sin(roll / 2), y=0.0, z=0.0, w=math.cos(roll / 2)),
                orientation_covariance=[0.01, 0, 0, 0, 0.01, 0, 0, 0, 0.09],
            )
            assert p.on_imu(imu)
        p.on_image(_img(1.1))
        tilted = loc.calls[-1]["gravity"]
        assert not np.allclose(tilted, static)
        assert loc.calls[-1]["yaw"] == pytest.approx(0.0) and loc.calls[-1]["yaw_sigma"] == (
            pytest.approx(0.3)
        )
        assert loc.calls[-1]["attitude_sigma"] is None  # the configured term applies
        p.on_fix(_fix(5.0))
        p.on_image(_img(5.0))  # no IMU sample around the image: back to the static mount
        np.testing.assert_allclose(loc.calls[-1]["gravity"], static)
        assert loc.calls[-1]["attitude_sigma"] == pytest.approx(0.05)
        assert p.stats_snapshot()["attitude_fallbacks"] == {"no_imu": 1, "not_bracketed": 1}
        assert (
            p.on_imu(
                NS(
                    header=_header(1.0),
                    orientation=NS(x=0, y=0, z=0, w=1),
                    orientation_covariance=[-1.0] + [0.0] * 8,
                )
            )
            is False
        )

    def test_equirectangular_needs_no_camera_info(self) -> None:
        p, loc = _pipeline(camera_model="equirectangular", camera_mount="forward")
        p.on_fix(_fix(1.0))
        assert p.on_image(_img(1.0, w=64, h=32)).ok
        cam = loc.calls[0]["camera"]
        assert type(cam).__name__ == "EquirectangularCamera"
        assert (cam.width_px, cam.height_px) == (64, 32)

    def test_localizer_exceptions_become_error_results(self) -> None:
        p, _ = _pipeline(FakeLocalizer(raise_exc=True))
        p.on_camera_info(_info())
        p.on_fix(_fix(1.0))
        est = p.on_image(_img(1.0))
        assert est.status is PoseStatus.ERROR and "boom" in est.reasons[0]

    def test_exact_image_stamp_is_kept(self) -> None:
        p, _ = _pipeline()
        p.on_camera_info(_info())
        p.on_fix(_fix(1_700_000_000.0))
        msg = _img(1_700_000_000.0)
        msg.header.stamp.nanosec = 123_456_789
        result = p.process_image(msg)
        assert result.stamp == (1_700_000_000, 123_456_789) and result.frame_id == "cam"


def _imu(stamp_s: float, roll_rad: float = 0.0) -> NS:
    return NS(
        header=_header(stamp_s),
        orientation=NS(x=math.sin(roll_rad / 2), y=0.0, z=0.0, w=math.cos(roll_rad / 2)),
        orientation_covariance=[0.01, 0, 0, 0, 0.01, 0, 0, 0, 0.09],
    )


class TestBadInputsAreRefusedOrCounted:
    def test_camera_info_declaring_three_times_the_image_is_refused(self) -> None:
        """The field case: declared 3x the image, K for the real size -> 38 m errors."""
        p, loc = _pipeline()
        info = _info(96, 72)
        info.k = [30.0, 0, 16.0, 0, 30.0, 12.0, 0, 0, 1]  # K of the real 32x24 image
        assert not p.on_camera_info(info)
        p.on_fix(_fix(1.0))
        est = p.on_image(_img(1.0))
        assert est.status is PoseStatus.ERROR and "no CameraInfo" in est.reasons[0]
        assert not loc.calls
        assert p.stats_snapshot()["skipped"] == {"camera_info:principal_point": 1}

    def test_camera_info_of_another_resolution_is_not_stretched_over_the_image(self) -> None:
        p, loc = _pipeline()
        assert p.on_camera_info(_info(64, 48))  # consistent, but for a 64x48 image
        p.on_fix(_fix(1.0))
        est = p.on_image(_img(1.0))  # 32x24
        assert est.status is PoseStatus.ERROR and "camera_info_allow_resize" in est.reasons[0]
        assert not loc.calls
        assert p.stats_snapshot()["skipped"] == {"camera_info:size_mismatch": 1}

    def test_mislabelled_encoding_is_a_counted_skip(self) -> None:
        p, loc = _pipeline()
        p.on_camera_info(_info())
        p.on_fix(_fix(1.0))
        assert p.on_image(_img(1.0, encoding="16UC1")).status is PoseStatus.BAD_IMAGE
        assert not loc.calls
        assert p.stats_snapshot()["skipped"] == {"image:encoding_mismatch": 1}

    def test_duplicate_stamp_is_dropped_and_counted(self) -> None:
        p, loc = _pipeline()
        p.on_camera_info(_info())
        p.on_fix(_fix(1.0))
        assert p.on_image(_img(1.0)).ok
        again = p.on_image(_img(1.0))
        assert again.status is PoseStatus.BAD_IMAGE and "duplicate" in again.reasons[0]
        assert len(loc.calls) == 1
        snap = p.stats_snapshot()
        assert snap["skipped"] == {"image:duplicate_stamp": 1} and snap["poses_ok"] == 1

    def test_out_of_order_images_are_localized_and_counted(self) -> None:
        p, loc = _pipeline()
        p.on_camera_info(_info())
        p.on_fix(_fix(1.0))
        assert p.on_image(_img(1.2)).ok
        assert p.on_image(_img(1.1)).ok  # older stamp: its own prior, IMU and patch
        assert [c["stamp_s"] for c in loc.calls] == pytest.approx([1.2, 1.1])
        assert p.stats_snapshot()["images_out_of_order"] == 1

    def test_a_looped_bag_is_not_a_stream_of_duplicates(self) -> None:
        p, loc = _pipeline()
        p.on_camera_info(_info())
        for _ in range(2):  # the same stamps again after the clock jumped back
            p.on_fix(_fix(1000.0))
            assert p.on_image(_img(1000.0)).ok
            p.on_fix(_fix(2000.0))
            assert p.on_image(_img(2000.0)).ok
        assert len(loc.calls) == 4 and not p.stats_snapshot()["skipped"]

    def test_late_imu_falls_back_with_the_static_attitude_sigma(self) -> None:
        p, loc = _pipeline(use_imu=True, camera_mount="nadir")
        p.on_camera_info(_info())
        p.on_fix(_fix(1.0))
        for t in (0.9, 1.0):
            p.on_imu(_imu(t, 0.1))
        p.on_image(_img(1.2))  # the IMU lags the camera: its newest sample is 0.2 s old
        assert loc.calls[-1]["attitude_sigma"] == pytest.approx(0.05)
        static = loc.calls[-1]["gravity"]
        np.testing.assert_allclose(static @ [0, 0, 1], [0, 0, -1], atol=1e-12)
        p.on_imu(_imu(1.3, 0.1))  # now the image at 1.25 is bracketed
        p.on_image(_img(1.25))
        assert loc.calls[-1]["attitude_sigma"] is None
        assert not np.allclose(loc.calls[-1]["gravity"], static)
        p.on_image(_img(0.5))  # an out-of-order image older than the IMU buffer
        assert loc.calls[-1]["attitude_sigma"] == pytest.approx(0.05)
        snap = p.stats_snapshot()
        assert snap["attitude_fallbacks"] == {"not_bracketed": 2}
        assert snap["last_attitude_source"] == "static_mount:not_bracketed"

    def test_interpolated_attitude_of_an_out_of_order_image(self) -> None:
        from cvgl_ros.core.mount import gravity_from_imu

        p, loc = _pipeline(use_imu=True, camera_mount="nadir")
        p.on_camera_info(_info())
        p.on_fix(_fix(1.0))
        for t, roll in ((0.9, 0.0), (1.0, 0.2), (1.1, 0.4)):
            p.on_imu(_imu(t, roll))
        p.on_image(_img(1.08))
        p.on_image(_img(0.95))  # older: interpolated between 0.9 and 1.0, not the newest
        expected = gravity_from_imu(
            (math.sin(0.05), 0.0, 0.0, math.cos(0.05)), p._extrinsics.body_from_camera
        )
        np.testing.assert_allclose(loc.calls[-1]["gravity"], expected, atol=1e-9)
        assert loc.calls[-1]["attitude_sigma"] is None

    def test_static_sigma_never_lowers_the_configured_attitude_term(self) -> None:
        p, loc = _pipeline(use_imu=True, **{"covariance.attitude_sigma_rad": 0.2})
        p.on_camera_info(_info())
        p.on_fix(_fix(1.0))
        p.on_image(_img(1.0))
        assert loc.calls[-1]["attitude_sigma"] == pytest.approx(0.2)


@pytest.mark.data
def test_real_pipeline_on_rosbags_messages(shared_data: Path, repo_root: Path) -> None:
    """The same object the replay tool uses, on rosbags types, against a real orthophoto."""
    typesys = pytest.importorskip("rosbags.typesys")
    from cvgl_ros.core.camera import PinholeCamera
    from cvgl_ros.sim.render import render_nadir_view
    from cvgl_ros.tiles import GeoTiffPatchSource

    ortho = shared_data / "spacenet_solaris_samples" / "pan1.tif"
    with GeoTiffPatchSource(ortho, 600, 0.5) as src:
        w, s, e, n = src.bounds_lonlat
        lat0, lon0 = (s + n) / 2, (w + e) / 2
        world = src.patch_at(lat0, lon0)
    origin = LocalEnu(lat0, lon0)
    cam = PinholeCamera(320, 240, 260.0, 260.0, 159.5, 119.5)
    truth = np.array([-11.0, 6.0])
    image = render_nadir_view(world, cam, truth, 90.0, -2.0)

    pipeline = Pipeline.from_params_file(
        repo_root / "config" / "drone_nadir.yaml",
        [
            f"tiles.source:={ortho}",
            "depth.range_m:=90.0",
            "patch.patch_size_px:=384",
            f"map_origin_lat_deg:={lat0}",
            f"map_origin_lon_deg:={lon0}",
        ],
    )
    ts = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    T = ts.types
    stamp = T["builtin_interfaces/msg/Time"](sec=1_700_000_000, nanosec=500_000_000)
    header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="camera_optical")
    roi = T["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    info = T["sensor_msgs/msg/CameraInfo"](
        header=header,
        height=240,
        width=320,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.array([260.0, 0, 159.5, 0, 260.0, 119.5, 0, 0, 1]),
        r=np.eye(3).reshape(-1),
        p=np.zeros(12),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )
    plat, plon = origin.to_wgs84(truth[0] + 6.0, truth[1] + 5.0)
    fix = T["sensor_msgs/msg/NavSatFix"](
        header=header,
        status=T["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
        latitude=float(plat),
        longitude=float(plon),
        altitude=100.0,
        position_covariance=np.diag([36.0, 36.0, 100.0]).reshape(-1),
        position_covariance_type=2,
    )
    img = T["sensor_msgs/msg/Image"](
        header=header,
        height=240,
        width=320,
        encoding="rgb8",
        is_bigendian=0,
        step=960,
        data=image.reshape(-1),
    )
    assert pipeline.on_camera_info(info) and pipeline.on_fix(fix)
    result = pipeline.process_image(img)
    est = result.estimate
    assert est.ok, est.reasons
    assert result.stamp == (1_700_000_000, 500_000_000)
    assert math.hypot(est.east_m - truth[0], est.north_m - truth[1]) < 1.5
    assert abs(math.remainder(est.yaw_enu_rad + 2.0, 2 * math.pi)) < 0.03
    assert np.all(np.linalg.eigvalsh(est.cov_en_yaw) > 0.0)
    assert pipeline.stats_snapshot()["tiles"]["patches"] >= 1
