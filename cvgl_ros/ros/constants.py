"""Topic names, frame ids and fixed numbers of the ROS interface, in one place.

Input topic names are fixed and relative, so they resolve in the node's namespace; point them at
other topics by remapping (``--ros-args -r camera/image_raw:=/cam/image``, launch-file
``remappings``), not by parameters. Output topics are private (``~/``) except ``/diagnostics``,
which is global by convention.
"""

from __future__ import annotations

NODE_NAME = "cvgl_node"
"""Default node name; parameter files key their ``ros__parameters`` under it."""

# Input topics (relative; remap them).
IMAGE_TOPIC = "camera/image_raw"
CAMERA_INFO_TOPIC = "camera/camera_info"
FIX_TOPIC = "gnss/fix"
IMU_TOPIC = "imu/data"
INPUT_TOPICS: tuple[str, ...] = (IMAGE_TOPIC, CAMERA_INFO_TOPIC, FIX_TOPIC, IMU_TOPIC)
COMPRESSED_SUFFIX = "/compressed"
"""image_transport convention: the compressed stream of ``T`` is published on ``T/compressed``."""

# Output topics.
POSE_TOPIC = "~/pose"
FIX_OUT_TOPIC = "~/fix"
OVERLAY_TOPIC = "~/debug/overlay"
DIAGNOSTICS_TOPIC = "/diagnostics"

# Frames (REP-105).
DEFAULT_MAP_FRAME = "map"
DEFAULT_BASE_FRAME = "base_link"

# robot_localization reads a huge variance as "not measured"; zero would claim perfect knowledge.
UNOBSERVED_VARIANCE = 1.0e6
"""Variance (m^2 or rad^2) written for z, roll and pitch of ``~/pose`` and for the altitude of
``~/fix`` when the GNSS prior reports no altitude variance: quantities this node does not
measure."""
MIN_VARIANCE = 1.0e-6
"""Floor (m^2, rad^2) for published variances: a published variance is never zero."""

DIAGNOSTIC_HARDWARE_ID = "cvgl_ros"

# sensor_msgs/NavSatStatus and NavSatFix constants (duplicated so that convert.py can read
# rosbags-deserialised messages without the ROS message packages installed).
NAVSAT_STATUS_NO_FIX = -1
NAVSAT_STATUS_FIX = 0
NAVSAT_SERVICE_GPS = 1
COVARIANCE_TYPE_UNKNOWN = 0
COVARIANCE_TYPE_APPROXIMATED = 1
COVARIANCE_TYPE_DIAGONAL_KNOWN = 2
COVARIANCE_TYPE_KNOWN = 3

# diagnostic_msgs/DiagnosticStatus levels.
DIAG_OK = 0
DIAG_WARN = 1
DIAG_ERROR = 2
DIAG_STALE = 3
