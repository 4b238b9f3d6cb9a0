"""Background prefetch of the tiles around (and ahead of) the GNSS fix.

:meth:`Prefetcher.update_fix` only records the fix and wakes the workers: it never blocks the
localization thread. A worker then plans (when the fix moved more than ``min_move_m``): every
tile within ``prefetch_radius_m`` of the fix and of points along the velocity up to
``lookahead_s`` ahead, ordered by the cost ``min_k (0.5 s_k + |tile - p_k|)`` where p_k is a
point on the predicted path s_k metres ahead; for a vehicle at rest that is plain ring order,
nearest first, and for a moving one tiles ahead come before tiles equally far behind. Workers
then download the plan through the provider (which stores every tile in the disk cache) until
it is done or a newer fix replaces it.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import mercantile
import numpy as np

from cvgl_ros.tiles.config import PatchConfig, PrefetchConfig
from cvgl_ros.tiles.geo import (
    check_in_web_mercator,
    check_lat_lon,
    choose_zoom,
    en_to_lonlat,
    lonlat_to_en,
    tiles_in_radius,
)
from cvgl_ros.tiles.provider import TileKey, TileProvider

log = logging.getLogger(__name__)

# Velocities estimated from fixes further apart than this are ignored, seconds.
_MAX_VELOCITY_DT_S = 10.0
# Faster than this between two fixes is a jump (outlier, teleport in a replay), m/s.
_MAX_SPEED_M_S = 150.0
# Distance along the predicted path counts this much in the schedule order: tiles ahead are
# needed sooner than tiles equally far behind.
_AHEAD_DISCOUNT = 0.5
# At most this many lookahead points (the step grows for long lookaheads).
_MAX_LOOKAHEAD_POINTS = 32


def plan_tiles(
    lat_deg: float,
    lon_deg: float,
    zoom: int,
    radius_m: float,
    velocity_en_m_s: tuple[float, float] = (0.0, 0.0),
    lookahead_s: float = 0.0,
    max_tiles: int | None = None,
) -> list[TileKey]:
    """Tiles around a fix and ahead of it, soonest-needed first.

    Args:
        lat_deg: fix latitude, degrees.
        lon_deg: fix longitude, degrees.
        zoom: zoom level.
        radius_m: radius around the fix and around each lookahead point, metres.
        velocity_en_m_s: (east, north) ground velocity, metres per second.
        lookahead_s: how far ahead along the velocity to schedule, seconds.
        max_tiles: keep only this many (the soonest).

    Returns:
        (z, x, y) tiles ordered by min over path points of (distance along the path to the
        point + distance from the point to the tile centre); ring order when at rest.
    """
    lat, lon = check_lat_lon(lat_deg, lon_deg)
    check_in_web_mercator(lat)
    ve, vn = (float(v) for v in velocity_en_m_s)
    speed = math.hypot(ve, vn) if math.isfinite(ve) and math.isfinite(vn) else 0.0
    ahead_m = min(speed, _MAX_SPEED_M_S) * lookahead_s
    step_m = max(radius_m / 2.0, 1.0, ahead_m / _MAX_LOOKAHEAD_POINTS)
    n_pts = 1 + (math.ceil(ahead_m / step_m) if ahead_m > 1.0 else 0)
    s = np.minimum(np.arange(n_pts) * step_m, ahead_m)
    if n_pts > 1:
        pe, pn = ve / speed * s, vn / speed * s
    else:
        pe, pn = np.zeros(1), np.zeros(1)
    candidates: set[TileKey] = set()
    p_lon, p_lat = en_to_lonlat(lat, lon, pe, pn)
    for la, lo in zip(p_lat, p_lon, strict=True):
        if abs(la) < 85.0:
            candidates.update(tiles_in_radius(float(la), float(lo), radius_m, zoom))
    if not candidates:
        return []
    keys = sorted(candidates)
    centres = [mercantile.bounds(mercantile.Tile(x, y, z)) for z, x, y in keys]
    c_lon = np.array([0.5 * (b.west + b.east) for b in centres])
    c_lat = np.array([0.5 * (b.south + b.north) for b in centres])
    ce, cn = lonlat_to_en(lat, lon, c_lon, c_lat)
    cost = np.min(
        _AHEAD_DISCOUNT * s[None, :]
        + np.hypot(ce[:, None] - pe[None, :], cn[:, None] - pn[None, :]),
        axis=1,
    )
    order = np.argsort(cost, kind="stable")
    out = [keys[i] for i in order]
    return out[:max_tiles] if max_tiles else out


class Prefetcher:
    """Worker threads that keep the cache filled around the latest fix."""

    def __init__(
        self,
        provider: TileProvider,
        config: PrefetchConfig | None = None,
        patch_config: PatchConfig | None = None,
        workers: int | None = None,
        start: bool = True,
    ) -> None:
        """Create (and by default start) the workers.

        Args:
            provider: tiles go through it into its disk cache.
            config: radius, lookahead, zoom.
            patch_config: picks the zoom from ``patch_m_per_px`` when ``config.zoom`` is None.
            workers: download threads; default the source's concurrency limit (max 4).
            start: start the threads now.
        """
        self.provider = provider
        self.config = config or PrefetchConfig()
        self.patch_config = patch_config or PatchConfig()
        if workers is None:
            src_cfg = getattr(provider.source, "config", None)
            workers = min(4, int(getattr(src_cfg, "max_concurrent_requests", 2)))
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._n_workers = workers
        self._cond = threading.Condition()
        self._queue: collections.deque[TileKey] = collections.deque()
        self._done: set[TileKey] = set()
        self._fix: tuple[float, float, tuple[float, float] | None, float] | None = None
        self._fix_generation = 0
        self._planned_generation = 0
        self._planning = False
        self._plan_centre: tuple[float, float] | None = None
        self._last_fix: tuple[float, float, float] | None = None
        self._velocity_en_m_s: tuple[float, float] = (0.0, 0.0)
        self._patch_m_per_px: float | None = None
        self._in_progress = 0
        self._stop = False
        self._threads: list[threading.Thread] = []
        self.counters: dict[str, int] = {
            "fixes": 0,
            "plans": 0,
            "scheduled": 0,
            "already_cached": 0,
            "fetched": 0,
            "failed": 0,
            "not_found": 0,
            "offline": 0,
            "errors": 0,
        }
        if start:
            self.start()

    def zoom_for(self, lat_deg: float) -> int:
        """Prefetch zoom at a latitude: the configured one, else the zoom of the latest patch
        resolution requested (adaptive matching reads patches finer than the configured
        ``patch_m_per_px``), else the configured patch resolution's."""
        if self.config.zoom is not None:
            return self.config.zoom
        pc = self.patch_config
        if pc.zoom is not None:
            return pc.zoom
        with self._cond:
            m_per_px = self._patch_m_per_px or pc.patch_m_per_px
        return choose_zoom(
            lat_deg,
            m_per_px,
            self.provider.tile_size_px,
            self.provider.min_zoom,
            self.provider.max_zoom,
            pc.zoom_coarse_tolerance,
        )

    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        with self._cond:
            if self._threads:
                return
            self._stop = False
            for i in range(self._n_workers):
                t = threading.Thread(target=self._run, name=f"tile-prefetch-{i}", daemon=True)
                self._threads.append(t)
                t.start()

    def update_fix(
        self,
        lat_deg: float,
        lon_deg: float,
        velocity_en_m_s: Sequence[float] | None = None,
        patch_m_per_px: float | None = None,
    ) -> None:
        """Record the latest fix (non-blocking; bad fixes are counted and ignored).

        Args:
            lat_deg: latitude, degrees.
            lon_deg: longitude, degrees.
            velocity_en_m_s: (east, north) velocity, metres per second; estimated from
                successive fixes when None.
            patch_m_per_px: resolution of the patch requested at this fix, metres per pixel:
                tiles are prefetched at its zoom (unless a zoom is configured).
        """
        try:
            lat, lon = check_lat_lon(lat_deg, lon_deg)
        except ValueError:
            with self._cond:
                self.counters["errors"] += 1
            return
        vel = None
        if velocity_en_m_s is not None:
            ve, vn = (float(v) for v in velocity_en_m_s)
            vel = (ve, vn) if math.isfinite(ve) and math.isfinite(vn) else None
        with self._cond:
            self.counters["fixes"] += 1
            if patch_m_per_px is not None and math.isfinite(patch_m_per_px) and patch_m_per_px > 0:
                self._patch_m_per_px = float(patch_m_per_px)
            self._fix = (lat, lon, vel, time.monotonic())
            self._fix_generation += 1
            self._cond.notify()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Block until the latest fix is planned and its tiles are processed; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while not self._idle_locked():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _idle_locked(self) -> bool:
        return (
            not self._queue
            and self._in_progress == 0
            and not self._planning
            and self._planned_generation == self._fix_generation
        )

    def stats(self) -> dict[str, int]:
        """Counters plus the current queue length and tiles in progress."""
        with self._cond:
            out = dict(self.counters)
            out["queue"] = len(self._queue)
            out["in_progress"] = self._in_progress
        return out

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the workers (in-flight downloads finish or time out)."""
        with self._cond:
            self._stop = True
            self._queue.clear()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout_s)
        self._threads = []

    # -- worker ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._queue and not self._plan_due_locked():
                    self._cond.wait()
                if self._stop:
                    return
                if self._plan_due_locked():
                    self._planning = True
                    fix, generation = self._fix, self._fix_generation
                    key = None
                else:
                    key = self._queue.popleft()
                    self._in_progress += 1
            if key is None:
                self._plan(fix, generation)
                continue
            try:
                result = self.provider.ensure_cached(*key)
            except Exception:  # a worker must survive anything a source throws
                log.exception("prefetch of tile %s failed", key)
                result = "failed"
            with self._cond:
                self._in_progress -= 1
                name = {"cached": "already_cached"}.get(result, result)
                self.counters[name] += 1
                if result in ("cached", "fetched"):
                    self._done.add(key)
                self._cond.notify_all()

    def _plan_due_locked(self) -> bool:
        return (
            not self._planning
            and self._fix is not None
            and self._planned_generation != self._fix_generation
        )

    def _plan(self, fix: Any, generation: int) -> None:
        lat, lon, vel, t_s = fix
        try:
            velocity = vel if vel is not None else self._estimate_velocity(lat, lon, t_s)
            moved = math.inf
            if self._plan_centre is not None:
                c_lat, c_lon = self._plan_centre
                e, n = lonlat_to_en(lat, lon, np.array([c_lon]), np.array([c_lat]))
                moved = float(np.hypot(e[0], n[0]))
            tiles: list[TileKey] = []
            if moved >= self.config.min_move_m or not self._queue:
                z = self.zoom_for(lat)
                tiles = plan_tiles(
                    lat,
                    lon,
                    z,
                    self.config.prefetch_radius_m,
                    velocity,
                    self.config.lookahead_s,
                    self.config.max_queue_tiles,
                )
                for k in range(1, self.config.extra_zoom_levels + 1):
                    if z - k >= self.provider.min_zoom:
                        tiles += tiles_in_radius(lat, lon, self.config.prefetch_radius_m, z - k)
        except Exception as exc:  # NoImageryError at a pole, odd values: count, keep running
            log.warning("prefetch planning failed at (%s, %s): %s", lat, lon, exc)
            with self._cond:
                self.counters["errors"] += 1
                self._planning = False
                self._planned_generation = generation
                self._cond.notify_all()
            return
        with self._cond:
            self._planning = False
            self._planned_generation = generation
            if tiles:
                self._plan_centre = (lat, lon)
                self.counters["plans"] += 1
                if len(self._done) > 200_000:
                    self._done.clear()
                todo = [t for t in tiles if t not in self._done]
                self._queue = collections.deque(todo[: self.config.max_queue_tiles])
                self.counters["scheduled"] += len(self._queue)
            self._cond.notify_all()

    def _estimate_velocity(self, lat: float, lon: float, t_s: float) -> tuple[float, float]:
        last, self._last_fix = self._last_fix, (lat, lon, t_s)
        if last is None:
            return self._velocity_en_m_s
        dt = t_s - last[2]
        if not (0.0 < dt <= _MAX_VELOCITY_DT_S):
            return self._velocity_en_m_s
        e, n = lonlat_to_en(last[0], last[1], np.array([lon]), np.array([lat]))
        ve, vn = float(e[0]) / dt, float(n[0]) / dt
        if not math.hypot(ve, vn) <= _MAX_SPEED_M_S:  # a jump, not motion: start over
            self._velocity_en_m_s = (0.0, 0.0)
            return self._velocity_en_m_s
        # Light smoothing: GNSS noise on fixes close in time makes raw differences jumpy.
        old_e, old_n = self._velocity_en_m_s
        self._velocity_en_m_s = (0.5 * old_e + 0.5 * ve, 0.5 * old_n + 0.5 * vn)
        return self._velocity_en_m_s
