"""The diagnostics level policy (OK / WARN / ERROR and messages), without a node."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cvgl_ros.core.types import PoseStatus
from cvgl_ros.ros import constants as const
from cvgl_ros.ros.diagnostics import (
    INPUT_FAULTS,
    gnss_status,
    localization_status,
    tiles_status,
)

OK, WARN, ERROR = const.DIAG_OK, const.DIAG_WARN, const.DIAG_ERROR


def _loc(**kw: Any) -> tuple[int, str]:
    args: dict[str, Any] = dict(
        since_image_s=0.1,
        since_pose_s=0.1,
        last_status="ok",
        last_failure="",
        poses_ok=7,
        no_pose_warn_s=2.0,
        image_topic="/cam/image",
    )
    args.update(kw)
    return localization_status(**args)


class TestLocalization:
    def test_waiting_for_the_first_image(self) -> None:
        level, msg = _loc(since_image_s=math.inf, since_pose_s=math.inf, last_status="")
        assert (level, msg) == (WARN, "waiting for images on /cam/image")
        level, msg = _loc(since_image_s=math.inf, image_qos_incompatible=1)
        assert level == WARN and "QoS is incompatible" in msg

    def test_localizing(self) -> None:
        assert _loc() == (OK, "localizing (7 poses)")

    def test_a_recent_pose_keeps_it_ok_and_names_the_last_failure(self) -> None:
        level, msg = _loc(last_status="too_few_inliers", last_failure="12 < 15", since_pose_s=1.0)
        assert level == OK and msg == "localizing (7 poses); last frame: 12 < 15"

    @pytest.mark.parametrize("status", sorted(INPUT_FAULTS))
    def test_no_pose_for_an_input_fault_is_an_error(self, status: str) -> None:
        level, msg = _loc(last_status=status, last_failure="why", since_pose_s=10.0)
        assert (level, msg) == (ERROR, f"no pose: {status}: why")

    def test_no_pose_for_a_refused_match_is_a_warning(self) -> None:
        status = PoseStatus.LOW_INLIER_RATIO.value
        assert status not in INPUT_FAULTS
        level, msg = _loc(last_status=status, last_failure="why", since_pose_s=math.inf)
        assert (level, msg) == (WARN, f"no pose: {status}: why")

    def test_a_silent_camera_raises_the_level_to_warn(self) -> None:
        level, msg = _loc(since_image_s=6.0, since_pose_s=1.0)  # 6 s > max(2, 5) s
        assert level == WARN and msg == "no image for 6.0 s; localizing (7 poses)"
        assert _loc(since_image_s=4.0, since_pose_s=1.0)[0] == OK  # under the 5 s minimum
        assert _loc(since_image_s=6.0, no_pose_warn_s=8.0, since_pose_s=1.0)[0] == OK
        assert _loc(since_image_s=9.0, no_pose_warn_s=8.0, since_pose_s=1.0)[0] == WARN
        level, _ = _loc(since_image_s=9.0, last_status="no_fix", since_pose_s=9.0)
        assert level == ERROR  # never lowered

    def test_an_unusable_imu_raises_the_level_to_warn(self) -> None:
        level, msg = _loc(last_attitude_source="static_mount:gap")
        assert level == WARN and msg.endswith("; IMU unusable (gap): static mount")
        assert _loc(last_attitude_source="static_mount")[0] == OK  # use_imu off: configured
        assert _loc(last_attitude_source="imu")[0] == OK


def test_gnss() -> None:
    assert gnss_status(has_fix=True) == (OK, "receiving fixes")
    assert gnss_status(has_fix=False) == (WARN, "no GNSS fix yet")
    assert gnss_status(has_fix=True, gpsd_connected=True) == (OK, "receiving fixes")
    assert gnss_status(has_fix=True, gpsd_connected=False) == (ERROR, "gpsd not connected")
    assert gnss_status(has_fix=False, gpsd_connected=False) == (ERROR, "gpsd not connected")


def test_tiles() -> None:
    ok = dict(last_failure_status="", last_status="ok", last_failure="")
    assert tiles_status(tile_stats={"hits": 3}, **ok) == (OK, "tile source ok")
    assert tiles_status(tile_stats={"error": "boom"}, **ok) == (
        WARN,
        "tile counters unavailable: boom",
    )
    no_imagery = dict(last_failure_status="no_imagery", last_failure="no tile at z18")
    assert tiles_status(tile_stats={"error": "boom"}, last_status="no_imagery", **no_imagery) == (
        ERROR,
        "no tile at z18",
    )
    # a later good frame clears it
    assert tiles_status(tile_stats={}, last_status="ok", **no_imagery)[0] == OK
