"""Reading bags for the replay tools: topics by role, messages in log-time order, pacing.

ROS 2 bags (mcap, sqlite3) and ROS 1 bags are read with the ``rosbags`` package (no ROS install
needed). Each input has a *role* (``image``, ``camera_info``, ``fix``, ``imu``) whose topic
:class:`BagTopics` names; the image falls back to ``<image>/compressed``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvgl_ros.tools.errors import ReplayError

LOGGER = logging.getLogger(__name__)

DEFAULT_TOPICS: dict[str, str] = {
    "image": "/camera/image_raw",
    "camera_info": "/camera/camera_info",
    "fix": "/gnss/fix",
    "imu": "/imu/data",
}


@dataclass
class BagTopics:
    """Topic names to read (resolved against the bag's connections)."""

    image: str = DEFAULT_TOPICS["image"]
    camera_info: str = DEFAULT_TOPICS["camera_info"]
    fix: str = DEFAULT_TOPICS["fix"]
    imu: str = DEFAULT_TOPICS["imu"]
    resolved: dict[str, str] = field(default_factory=dict)


def open_reader(bag: str | Path) -> Any:
    """An opened ``rosbags`` ``AnyReader`` over ``bag`` (close it when done).

    Raises:
        ReplayError: the bag is missing or unreadable.
    """
    from rosbags.highlevel import AnyReader

    path = Path(bag)
    if not path.exists():
        raise ReplayError(f"bag not found: {path}")
    try:
        reader = AnyReader([path])
        reader.open()
    except Exception as exc:  # rosbags raises several types for unreadable bags
        raise ReplayError(f"cannot open bag {path}: {exc}") from exc
    return reader


ROLE_OPTIONS = {
    "image": "--image-topic",
    "camera_info": "--camera-info-topic",
    "fix": "--fix-topic",
    "imu": "--imu-topic",
}


def resolve_topics(
    available: set[str], topics: BagTopics, required: Sequence[str] = ("image",)
) -> dict[str, str]:
    """Map roles (image, camera_info, fix, imu) to topics present in the bag.

    The image falls back to ``<image>/compressed``.

    Args:
        available: the bag's topics.
        topics: the topic of each role.
        required: roles the bag must have.

    Raises:
        ReplayError: a required role's topic is not in the bag (the message lists the bag's
            topics and the option that names the role's topic).
    """
    resolved: dict[str, str] = {}
    for role in ("image", "camera_info", "fix", "imu"):
        name = getattr(topics, role)
        if name in available:
            resolved[role] = name
        elif role == "image" and f"{name}/compressed" in available:
            resolved[role] = f"{name}/compressed"
    for role in required:
        if role not in resolved:
            also = " (or its /compressed)" if role == "image" else ""
            raise ReplayError(
                f"bag has no {role.replace('_', ' ')} topic {getattr(topics, role)!r}{also}; "
                f"topics: {sorted(available)} (choose one with {ROLE_OPTIONS[role]})"
            )
    if "fix" not in resolved:
        LOGGER.warning("bag has no fix topic %r: every frame will be no_fix", topics.fix)
    return resolved


def check_bag(bag: str | Path, topics: BagTopics, required: Sequence[str]) -> None:
    """Open the bag and check that it has the ``required`` roles' topics (fills ``resolved``).

    Raises:
        ReplayError: the bag is missing, unreadable, or lacks a required topic.
    """
    reader = open_reader(bag)
    try:
        topics.resolved = resolve_topics({c.topic for c in reader.connections}, topics, required)
    finally:
        reader.close()


def required_roles(configs: Any) -> tuple[str, ...]:
    """Roles a bag must have for the node configuration: image, fix, and CameraInfo (pinhole).

    Without fixes every frame would be ``no_fix`` and without CameraInfo every pinhole frame
    an error: a replay that can only fail is refused up front. A missing IMU is allowed: the
    pipeline falls back to the static mount with an inflated covariance and counts it.
    """
    roles = ["image", "fix"]
    if configs.node.camera_model == "pinhole":
        roles.append("camera_info")
    return tuple(roles)


def iter_bag(bag: str | Path, topics: BagTopics) -> Iterator[tuple[str, int, Any]]:
    """Yield (role, log time ns, deserialised message) in log-time order.

    ``topics.resolved`` is filled with the topics used.
    """
    reader = open_reader(bag)
    try:
        by_topic, conns = role_connections(reader, topics)
        for conn, t_ns, raw in reader.messages(connections=conns):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception as exc:  # a corrupt message is skipped, not fatal
                LOGGER.warning("skipping undecodable message on %s: %s", conn.topic, exc)
                continue
            yield by_topic[conn.topic], int(t_ns), msg
    finally:
        reader.close()


def role_connections(reader: Any, topics: BagTopics) -> tuple[dict[str, str], list[Any]]:
    """Fill ``topics.resolved`` from the bag's topics (the image topic is required).

    Returns:
        (role by topic name, the reader's connections on those topics).
    """
    topics.resolved = resolve_topics({c.topic for c in reader.connections}, topics)
    by_topic = {v: k for k, v in topics.resolved.items()}
    return by_topic, [c for c in reader.connections if c.topic in by_topic]


def header_stamp_ns(msg: Any) -> int:
    """``msg.header.stamp`` in nanoseconds (ROS 2 ``sec``/``nanosec`` or ROS 1 ``secs``/``nsecs``).

    Raises:
        AttributeError: the message has no header stamp.
    """
    st = msg.header.stamp
    sec = getattr(st, "sec", None)
    if sec is None:  # ROS 1 time
        sec, nsec = st.secs, st.nsecs
    else:
        nsec = st.nanosec
    return int(sec) * 1_000_000_000 + int(nsec)


class Pacer:
    """Sleeps so that bag log time advances at ``rate`` times wall time.

    Args:
        rate: playback speed factor; 0 (or less) = no pacing, as fast as possible.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._start: tuple[float, float] | None = None  # (wall s, log s) of the first message

    def wait(self, t_ns: int) -> None:
        """Sleep until the message logged at ``t_ns`` (nanoseconds) is due."""
        if self.rate <= 0.0:
            return
        now = time.perf_counter()
        if self._start is None:
            self._start = (now, t_ns * 1e-9)
            return
        due = self._start[0] + (t_ns * 1e-9 - self._start[1]) / self.rate
        if due > now:
            time.sleep(due - now)


def add_topic_arguments(p: argparse.ArgumentParser) -> None:
    """``--image-topic`` etc."""
    for role, default in DEFAULT_TOPICS.items():
        p.add_argument(
            f"--{role.replace('_', '-')}-topic", default=default, help=f"{role} topic in the bag"
        )


def topics_from_args(args: argparse.Namespace) -> BagTopics:
    """Topics from parsed arguments."""
    return BagTopics(
        image=args.image_topic,
        camera_info=args.camera_info_topic,
        fix=args.fix_topic,
        imu=args.imu_topic,
    )
