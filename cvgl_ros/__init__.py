"""cvgl_ros: cross-view geo-localization for ROS 2.

Gives a robot, car or drone an absolute 3-DoF pose (east, north, yaw) by matching its camera
image against aerial imagery cached around a coarse GNSS fix. See ``README.md`` and
``docs/`` for the method and the architecture: a pure numpy core (:mod:`cvgl_ros.core`) with
thin adapters for tiles, models, inference backends, ROS 2 and the command-line tools.
"""

__version__ = "0.1.0"
