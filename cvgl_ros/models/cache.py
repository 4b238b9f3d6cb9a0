"""Aerial feature cache: aerial features depend only on the patch, so compute them once.

While the GNSS fix stays inside the current patch, the patch source returns the same patch
and only the ground image runs through the network each frame.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from cvgl_ros.core.types import AerialPatch
from cvgl_ros.models.classical import patch_key

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


class AerialFeatureCache(Generic[T]):
    """Least-recently-used cache of per-patch features.

    Keys are :func:`cvgl_ros.models.classical.patch_key` (source, centre, resolution, size and
    a digest of the pixels), so a different patch can never be served stale features. The key
    of the most recent patch object is remembered with that object: when the caller passes
    the very same :class:`AerialPatch` again (the localizer reuses its patch across frames), the
    lookup skips hashing its pixels (about 10 ms for a 1024 px patch). Patches are treated as
    immutable values: modifying a patch's arrays in place after a lookup is not detected.

    Args:
        compute: patch -> features, called on a miss.
        max_entries: patches kept (0 disables caching).
    """

    def __init__(self, compute: Callable[[AerialPatch], T], max_entries: int = 2) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self._compute = compute
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[object, ...], T] = OrderedDict()
        # The last patch object looked up and its key (strong reference: ``id`` alone could be
        # recycled by another object).
        self._last: tuple[AerialPatch, tuple[object, ...]] | None = None
        self.hits = 0
        self.misses = 0

    def get(self, patch: AerialPatch) -> T:
        """Features of ``patch``, computed on a miss."""
        if self._max_entries == 0:
            self.misses += 1
            return self._compute(patch)
        if self._last is not None and self._last[0] is patch:
            key = self._last[1]
        else:
            key = patch_key(patch)
            self._last = (patch, key)
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        self.misses += 1
        value = self._compute(patch)
        self._entries[key] = value
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        LOGGER.debug("aerial feature cache miss (%d entries)", len(self._entries))
        return value

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        self._entries.clear()
        self._last = None

    def stats(self) -> dict[str, int]:
        """Counters for diagnostics."""
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries)}
