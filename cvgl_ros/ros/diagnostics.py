"""The node's diagnostics policy: OK / WARN / ERROR and the one-line message of each status.

Pure functions of counters and ages (no rclpy): :class:`~cvgl_ros.ros.node.CvglNode` collects
the numbers and publishes what these decide, so the policy is tested without a node.
Levels are the ``DIAG_*`` constants of :mod:`cvgl_ros.ros.constants`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from cvgl_ros.core.types import PoseStatus
from cvgl_ros.ros import constants as const

INPUT_FAULTS: frozenset[str] = frozenset(
    {
        PoseStatus.NO_FIX.value,
        PoseStatus.STALE_FIX.value,
        PoseStatus.NO_IMAGERY.value,
        PoseStatus.BAD_IMAGE.value,
        PoseStatus.ERROR.value,
    }
)
"""Statuses caused by missing or bad inputs: while no pose comes, they make the state ERROR
(the other failures, a frame the matcher or the gates refused, only WARN)."""

NO_IMAGE_WARN_MIN_S = 5.0
"""A silent camera is reported after ``max(no_pose_warn_s, this)`` seconds without an image."""


def localization_status(
    *,
    since_image_s: float,
    since_pose_s: float,
    last_status: str,
    last_failure: str,
    poses_ok: int,
    no_pose_warn_s: float,
    image_topic: str,
    image_qos_incompatible: int = 0,
    last_attitude_source: str = "",
) -> tuple[int, str]:
    """Level and message of the ``localization`` status.

    - no image yet: WARN ("waiting for images");
    - the last frame gave a pose, or one came within ``no_pose_warn_s``: OK (naming the last
      failure, if the latest frame failed);
    - else ERROR when the last failure is an input fault (:data:`INPUT_FAULTS`), WARN otherwise;
    - raised to WARN when no image came for ``max(no_pose_warn_s, 5 s)`` or the latest frame
      fell back to the static mount because the IMU could not give its attitude.

    Args:
        since_image_s: seconds since the last image arrived (``inf`` before the first).
        since_pose_s: seconds since the last published pose (``inf`` before the first).
        last_status: status value of the latest frame (``""`` before the first).
        last_failure: reason text of the latest failed frame.
        poses_ok: poses published so far.
        no_pose_warn_s: the node's ``no_pose_warn_s``, seconds.
        image_topic: the subscribed image topic, for the message.
        image_qos_incompatible: incompatible-QoS events of the image subscription.
        last_attitude_source: ``imu``, ``static_mount`` or ``static_mount:<reason>``.

    Returns:
        (``DIAG_*`` level, one-line message).
    """
    ok = PoseStatus.OK.value
    if not math.isfinite(since_image_s):
        level, message = const.DIAG_WARN, f"waiting for images on {image_topic}"
        if image_qos_incompatible:
            message += " (a publisher's QoS is incompatible: see image_qos)"
    elif last_status == ok or since_pose_s <= no_pose_warn_s:
        level, message = const.DIAG_OK, f"localizing ({poses_ok} poses)"
        if last_status and last_status != ok:
            message += f"; last frame: {last_failure}"
    elif last_status in INPUT_FAULTS:
        level, message = const.DIAG_ERROR, f"no pose: {last_status}: {last_failure}"
    else:
        level, message = const.DIAG_WARN, f"no pose: {last_status}: {last_failure}"
    if since_image_s > max(no_pose_warn_s, NO_IMAGE_WARN_MIN_S) and math.isfinite(since_image_s):
        level = max(level, const.DIAG_WARN)
        message = f"no image for {since_image_s:.1f} s; " + message
    if last_attitude_source.startswith("static_mount:"):
        level = max(level, const.DIAG_WARN)
        message += f"; IMU unusable ({last_attitude_source.split(':', 1)[1]}): static mount"
    return level, message


def gnss_status(*, has_fix: bool, gpsd_connected: bool | None = None) -> tuple[int, str]:
    """Level and message of the ``gnss`` status.

    Args:
        has_fix: a fix has been received.
        gpsd_connected: whether the gpsd source is connected (None: fixes come from a topic).

    Returns:
        (``DIAG_*`` level, message): OK "receiving fixes", WARN "no GNSS fix yet", ERROR
        "gpsd not connected" (which wins).
    """
    if gpsd_connected is False:
        return const.DIAG_ERROR, "gpsd not connected"
    if not has_fix:
        return const.DIAG_WARN, "no GNSS fix yet"
    return const.DIAG_OK, "receiving fixes"


def tiles_status(
    *,
    tile_stats: Mapping[str, object],
    last_failure_status: str,
    last_status: str,
    last_failure: str,
) -> tuple[int, str]:
    """Level and message of the ``tiles`` status.

    Args:
        tile_stats: the patch source's counters (``{"error": text}`` when they failed).
        last_failure_status: status value of the latest failed frame.
        last_status: status value of the latest frame.
        last_failure: reason text of the latest failed frame.

    Returns:
        (``DIAG_*`` level, message): ERROR with the failure's reason while the latest frame
        failed for want of imagery, WARN when the source's counters are unavailable, else OK.
    """
    if last_failure_status == PoseStatus.NO_IMAGERY.value and last_status != PoseStatus.OK.value:
        return const.DIAG_ERROR, last_failure
    if "error" in tile_stats:
        return const.DIAG_WARN, f"tile counters unavailable: {tile_stats['error']}"
    return const.DIAG_OK, "tile source ok"
