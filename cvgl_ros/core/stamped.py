"""What the stamp-sorted sensor buffers share (:mod:`.gnss`, :mod:`.attitude`).

Messages arrive out of order and a replayed bag may loop: the buffers keep their samples sorted
by stamp, replace a sample with an equal stamp, drop the oldest beyond a capacity, and start over
when the clock jumps back by more than :data:`CLOCK_JUMP_BACK_S`.
"""

from __future__ import annotations

import bisect
import operator
from typing import Protocol, TypeVar

CLOCK_JUMP_BACK_S = 60.0
"""A sample this much older than the newest one means the clock jumped back (a looped bag, a
reset simulation clock), seconds: what was buffered before is meaningless."""


class Stamped(Protocol):
    """Anything with a ``stamp_s`` (seconds)."""

    @property
    def stamp_s(self) -> float: ...


StampedT = TypeVar("StampedT", bound=Stamped)


def insert_by_stamp(items: list[StampedT], item: StampedT, capacity: int) -> None:
    """Insert ``item`` into ``items`` (sorted by ``stamp_s``) in place.

    A sample with the same stamp is replaced; beyond ``capacity`` samples the oldest is dropped.
    """
    i = bisect.bisect_left(items, item.stamp_s, key=operator.attrgetter("stamp_s"))
    if i < len(items) and items[i].stamp_s == item.stamp_s:
        items[i] = item
    else:
        items.insert(i, item)
    if len(items) > capacity:
        del items[0]


def jumped_back(stamp_s: float, newest_s: float) -> bool:
    """True when ``stamp_s`` is more than :data:`CLOCK_JUMP_BACK_S` before ``newest_s``."""
    return stamp_s < newest_s - CLOCK_JUMP_BACK_S
