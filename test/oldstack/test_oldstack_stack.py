"""The old-stack job (``make test-oldstack``) really runs on Debian's OpenCV and numpy.

The job's value is that the core, classical matcher and node tests run against the
``python3-opencv`` / ``python3-numpy`` a ROS 2 robot has from apt (Debian bookworm: OpenCV 4.6,
numpy 1.24), not against the pinned wheels of ``make test``; these checks fail that job if pip
ever slipped newer wheels in. Outside the job (no ``CVGL_OLDSTACK_OPENCV``) they skip.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest

EXPECT_OPENCV = os.environ.get("CVGL_OLDSTACK_OPENCV", "")
EXPECT_NUMPY = os.environ.get("CVGL_OLDSTACK_NUMPY", "")
DEBIAN_SITE = Path("/usr/lib/python3/dist-packages")

pytestmark = pytest.mark.skipif(
    not (EXPECT_OPENCV and EXPECT_NUMPY), reason="runs in the old-stack job (make test-oldstack)"
)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def test_opencv_is_debians_old_build() -> None:
    import cv2

    assert cv2.__version__.startswith(EXPECT_OPENCV + "."), cv2.__version__
    # Older than 4.8, the version whose SIFT keyword this job exists to catch.
    assert _version_tuple(cv2.__version__) < (4, 8)
    assert Path(cv2.__file__).resolve().is_relative_to(DEBIAN_SITE), cv2.__file__


def test_numpy_is_debians_1x() -> None:
    import numpy as np

    assert np.__version__.startswith(EXPECT_NUMPY + "."), np.__version__
    assert _version_tuple(np.__version__) < (2, 0)
    assert Path(np.__file__).resolve().is_relative_to(DEBIAN_SITE), np.__file__


def test_no_opencv_or_numpy_wheel_in_the_venv() -> None:
    names = {
        (dist.metadata["Name"] or "").lower(): dist for dist in importlib.metadata.distributions()
    }
    wheels = sorted(n for n in names if n.startswith("opencv"))
    assert not wheels, f"OpenCV wheels installed over Debian's python3-opencv: {wheels}"
    numpy_dist = names.get("numpy")
    if numpy_dist is not None:
        location = Path(str(numpy_dist.locate_file(""))).resolve()
        assert location.is_relative_to(DEBIAN_SITE), f"numpy distribution from {location}"


def test_ros_wheels_run_on_numpy_1() -> None:
    """The ROS 2 message wheels (built against numpy 2) fill numpy 1 arrays."""
    import numpy as np

    nav = pytest.importorskip("sensor_msgs.msg")
    msg = nav.NavSatFix()
    msg.position_covariance = [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0]
    assert isinstance(msg.position_covariance, np.ndarray)
    assert msg.position_covariance.dtype == np.float64
    assert float(msg.position_covariance[8]) == 3.0
