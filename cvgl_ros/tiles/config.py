"""Frozen, validated configurations of the tile subsystem.

Every field carries its unit in its name; ``__post_init__`` raises ``ValueError`` naming the
field on a bad value, so a typo in a parameter file fails at start-up, not mid-mission.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

DEFAULT_USER_AGENT = "cvgl_ros/0.1 (aerial tile cache; +https://github.com/cvgl-ros/cvgl_ros)"

SourceKind = Literal["xyz", "wms", "mbtiles", "geotiff"]


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def wmts_to_xyz_template(template: str) -> str:
    """Map OGC WMTS REST placeholders (``{TileMatrix}``, ``{TileCol}``, ``{TileRow}``) to XYZ.

    Valid for services whose tile matrix set is GoogleMapsCompatible / WebMercatorQuad (the
    matrix id is the zoom level), which is what XYZ clients consume.
    """
    return (
        template.replace("{TileMatrix}", "{z}")
        .replace("{TileCol}", "{x}")
        .replace("{TileRow}", "{y}")
    )


def source_kind(source: str) -> SourceKind:
    """Classify a source string (URL template, ``wms:URL``, ``.mbtiles`` or GeoTIFF path).

    Raises:
        ValueError: when the string matches none of the supported forms.
    """
    s = source.strip()
    low = s.lower()
    if low.startswith("wms:"):
        return "wms"
    if low.startswith(("http://", "https://")):
        s = wmts_to_xyz_template(s)
        has_xyz = all(k in s for k in ("{z}", "{x}")) and ("{y}" in s or "{-y}" in s)
        if not has_xyz and "{q}" not in s:
            raise ValueError(
                f"tile URL template {s!r} needs {{z}}, {{x}}, {{y}} (or {{q}}) placeholders"
            )
        return "xyz"
    if low.endswith(".mbtiles"):
        return "mbtiles"
    if low.endswith((".tif", ".tiff", ".vrt", ".jp2", ".img")):
        return "geotiff"
    raise ValueError(
        f"unknown tile source {s!r}: expected an http(s) URL template with {{z}}/{{x}}/{{y}}, "
        "'wms:URL', a .mbtiles file or a GeoTIFF (.tif) path"
    )


def default_source_id(source: str) -> str:
    """A stable, filesystem-safe id for a source string (host/path slug + short hash)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", re.sub(r"^\w+:/*", "", source)).strip("_")[:40]
    digest = hashlib.sha1(source.encode("utf-8")).hexdigest()[:10]
    return f"{slug}_{digest}" if slug else digest


@dataclass(frozen=True)
class TileSourceConfig:
    """Where tiles come from and how politely they are fetched.

    Attributes:
        source: URL template (``https://{s}.tile.example/{z}/{x}/{y}.jpg``; ``{q}`` quadkey,
            ``{-y}`` TMS row), ``wms:https://host/wms`` (GetMap base URL), an ``.mbtiles`` file
            or a GeoTIFF path.
        source_id: cache key of this source; derived from ``source`` when empty. Two configs
            with the same id share cached tiles, so change it when the imagery changes.
        tile_size_px: edge of a tile, pixels (256 for most XYZ services, 512 for some).
        min_zoom: lowest zoom level the source serves.
        max_zoom: highest zoom level the source serves.
        subdomains: values substituted for ``{s}``, round-robin.
        headers: extra HTTP headers as (name, value) pairs (API keys, referer).
        user_agent: the User-Agent header; tile usage policies require an identifying one.
        connect_timeout_s: TCP connect timeout, seconds.
        read_timeout_s: time allowed between bytes of the response, seconds.
        max_retries: retries after the first attempt on timeouts, connection errors, 5xx, 429.
        backoff_base_s: first retry delay, seconds; doubles each retry, with full jitter.
        backoff_max_s: cap of one retry delay (and of an honoured Retry-After), seconds.
        max_concurrent_requests: requests in flight at once, across all threads.
        max_requests_per_s: average request rate limit (token bucket), requests per second.
        verify_tls: verify HTTPS certificates.
        wms_layers: WMS ``LAYERS`` parameter (required for WMS sources).
        wms_styles: WMS ``STYLES`` parameter.
        wms_format: WMS ``FORMAT`` (``image/jpeg`` or ``image/png``).
        wms_version: WMS protocol version, ``1.3.0`` or ``1.1.1``.
    """

    source: str
    source_id: str = ""
    tile_size_px: int = 256
    min_zoom: int = 0
    max_zoom: int = 19
    subdomains: tuple[str, ...] = ("a", "b", "c")
    headers: tuple[tuple[str, str], ...] = ()
    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout_s: float = 3.05
    read_timeout_s: float = 10.0
    max_retries: int = 3
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    max_concurrent_requests: int = 4
    max_requests_per_s: float = 10.0
    verify_tls: bool = True
    wms_layers: str = ""
    wms_styles: str = ""
    wms_format: str = "image/jpeg"
    wms_version: str = "1.3.0"

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError("source must be a non-empty string")
        kind = source_kind(self.source)
        if not self.source_id:
            object.__setattr__(self, "source_id", default_source_id(self.source.strip()))
        if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", self.source_id):
            raise ValueError(
                f"source_id must be 1-128 characters of [A-Za-z0-9_.-], got {self.source_id!r}"
            )
        if self.tile_size_px not in (256, 512):
            raise ValueError(f"tile_size_px must be 256 or 512, got {self.tile_size_px!r}")
        if not (isinstance(self.min_zoom, int) and 0 <= self.min_zoom <= 24):
            raise ValueError(f"min_zoom must be an int in [0, 24], got {self.min_zoom!r}")
        if not (isinstance(self.max_zoom, int) and self.min_zoom <= self.max_zoom <= 24):
            raise ValueError(f"max_zoom must be an int in [min_zoom, 24], got {self.max_zoom!r}")
        if isinstance(self.headers, Mapping):
            object.__setattr__(self, "headers", tuple(self.headers.items()))
        # "Name: value" strings (how ROS string-array parameters spell headers) become pairs.
        object.__setattr__(
            self,
            "headers",
            tuple(
                tuple(p.strip() for p in h.split(":", 1)) if isinstance(h, str) else tuple(h)
                for h in self.headers
            ),
        )
        object.__setattr__(self, "subdomains", tuple(self.subdomains))
        if "{s}" in self.source and not self.subdomains:
            raise ValueError("subdomains must not be empty when the template uses {s}")
        for pair in self.headers:
            if len(pair) != 2 or not all(isinstance(p, str) for p in pair):
                raise ValueError(f"headers must be (name, value) string pairs, got {pair!r}")
        _positive("connect_timeout_s", self.connect_timeout_s)
        _positive("read_timeout_s", self.read_timeout_s)
        if not (isinstance(self.max_retries, int) and 0 <= self.max_retries <= 20):
            raise ValueError(f"max_retries must be an int in [0, 20], got {self.max_retries!r}")
        _non_negative("backoff_base_s", self.backoff_base_s)
        _non_negative("backoff_max_s", self.backoff_max_s)
        if not (
            isinstance(self.max_concurrent_requests, int) and self.max_concurrent_requests > 0
        ):
            raise ValueError(
                "max_concurrent_requests must be a positive int, "
                f"got {self.max_concurrent_requests!r}"
            )
        _positive("max_requests_per_s", self.max_requests_per_s)
        if kind == "wms":
            if not self.wms_layers:
                raise ValueError("wms_layers must be set for a WMS source")
            if self.wms_version not in ("1.3.0", "1.1.1"):
                raise ValueError(f"wms_version must be 1.3.0 or 1.1.1, got {self.wms_version!r}")

    @property
    def kind(self) -> SourceKind:
        """``xyz``, ``wms``, ``mbtiles`` or ``geotiff``."""
        return source_kind(self.source)


@dataclass(frozen=True)
class PatchConfig:
    """The aerial patch handed to the localizer.

    Attributes:
        patch_size_px: edge of the square, north-up patch, pixels.
        patch_m_per_px: ground sampling distance of the patch, metres per pixel.
        min_valid_fraction: a patch with a smaller fraction of valid pixels raises
            ``NoImageryError``; a patch with no valid pixel always does.
        zoom: force this XYZ zoom level; ``None`` chooses it from ``patch_m_per_px``.
        zoom_coarse_tolerance: accept tiles up to this factor coarser than ``patch_m_per_px``
            before going one zoom level finer (1.0 = never upsample).
        fetch_missing: fetch tiles missing from the cache inside ``patch_at`` (ignored in
            offline mode); when False, missing tiles only show in the mask.
        fetch_budget_s: longest ``patch_at`` waits for missing tiles (fetched in parallel),
            seconds; tiles still downloading then are masked in this patch and land in the
            cache for the next one.
    """

    patch_size_px: int = 512
    patch_m_per_px: float = 0.5
    min_valid_fraction: float = 0.0
    zoom: int | None = None
    zoom_coarse_tolerance: float = 1.15
    fetch_missing: bool = True
    fetch_budget_s: float = 2.0

    def __post_init__(self) -> None:
        if not (isinstance(self.patch_size_px, int) and 8 <= self.patch_size_px <= 16384):
            raise ValueError(
                f"patch_size_px must be an int in [8, 16384], got {self.patch_size_px!r}"
            )
        _positive("patch_m_per_px", self.patch_m_per_px)
        if not (0.0 <= self.min_valid_fraction <= 1.0):
            raise ValueError(
                f"min_valid_fraction must be in [0, 1], got {self.min_valid_fraction!r}"
            )
        if self.zoom is not None and not (isinstance(self.zoom, int) and 0 <= self.zoom <= 24):
            raise ValueError(f"zoom must be None or an int in [0, 24], got {self.zoom!r}")
        if not (1.0 <= self.zoom_coarse_tolerance <= 2.0):
            raise ValueError(
                f"zoom_coarse_tolerance must be in [1, 2], got {self.zoom_coarse_tolerance!r}"
            )
        _non_negative("fetch_budget_s", self.fetch_budget_s)

    def resolve_overrides(
        self, patch_size_px: int | None, patch_m_per_px: float | None
    ) -> tuple[int, float]:
        """The (edge px, metres per pixel) of one ``patch_at`` request.

        Args:
            patch_size_px: override of ``patch_size_px`` (None or 0: the configured one).
            patch_m_per_px: override of ``patch_m_per_px`` (None or 0: the configured one).

        Raises:
            ValueError: an override outside the range the fields accept.
        """
        size = int(patch_size_px or self.patch_size_px)
        mpp = float(patch_m_per_px or self.patch_m_per_px)
        if size != self.patch_size_px or mpp != self.patch_m_per_px:
            PatchConfig(patch_size_px=size, patch_m_per_px=mpp)  # validates the overrides
        return size, mpp


@dataclass(frozen=True)
class CacheConfig:
    """The on-disk tile cache (one SQLite file, MBTiles-compatible).

    Attributes:
        max_size_bytes: bound on the stored tile bytes; least-recently-used tiles are evicted
            beyond it.
        evict_to_fraction: eviction brings the size down to this fraction of the bound, so
            that eviction runs rarely rather than on every insert.
        busy_timeout_s: how long a writer waits for another process's lock, seconds.
        synchronous: SQLite ``synchronous`` pragma; ``NORMAL`` with WAL survives process
            crashes, ``FULL`` also survives power loss at some write cost.
        memory_tiles: decoded tiles kept in memory per process (0 disables).
        touch_flush_interval_s: last-access times of read tiles are batched and written at
            most this often, seconds (reads never wait on the write lock).
    """

    max_size_bytes: int = 2 * 1024**3
    evict_to_fraction: float = 0.9
    busy_timeout_s: float = 10.0
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    memory_tiles: int = 256
    touch_flush_interval_s: float = 5.0

    def __post_init__(self) -> None:
        if not (isinstance(self.max_size_bytes, int) and self.max_size_bytes > 0):
            raise ValueError(f"max_size_bytes must be a positive int, got {self.max_size_bytes!r}")
        if not (0.1 <= self.evict_to_fraction <= 1.0):
            raise ValueError(
                f"evict_to_fraction must be in [0.1, 1], got {self.evict_to_fraction!r}"
            )
        _non_negative("busy_timeout_s", self.busy_timeout_s)
        if self.synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {self.synchronous!r}")
        if not (isinstance(self.memory_tiles, int) and self.memory_tiles >= 0):
            raise ValueError(f"memory_tiles must be an int >= 0, got {self.memory_tiles!r}")
        _non_negative("touch_flush_interval_s", self.touch_flush_interval_s)


@dataclass(frozen=True)
class PrefetchConfig:
    """The background prefetch that follows the GNSS fix.

    Attributes:
        prefetch_radius_m: tiles within this distance of the fix are scheduled, metres.
        lookahead_s: tiles are also scheduled around the position this far ahead along the
            velocity, seconds.
        min_move_m: the fix must move this far before the schedule is rebuilt, metres.
        max_queue_tiles: bound on scheduled tiles (nearest kept).
        zoom: zoom level to prefetch; ``None`` uses the patch zoom at the fix.
        extra_zoom_levels: also prefetch this many coarser levels (fallback imagery).
    """

    prefetch_radius_m: float = 300.0
    lookahead_s: float = 10.0
    min_move_m: float = 10.0
    max_queue_tiles: int = 4096
    zoom: int | None = None
    extra_zoom_levels: int = 0

    def __post_init__(self) -> None:
        _positive("prefetch_radius_m", self.prefetch_radius_m)
        _non_negative("lookahead_s", self.lookahead_s)
        _non_negative("min_move_m", self.min_move_m)
        if not (isinstance(self.max_queue_tiles, int) and self.max_queue_tiles > 0):
            raise ValueError(
                f"max_queue_tiles must be a positive int, got {self.max_queue_tiles!r}"
            )
        if self.zoom is not None and not (isinstance(self.zoom, int) and 0 <= self.zoom <= 24):
            raise ValueError(f"zoom must be None or an int in [0, 24], got {self.zoom!r}")
        if not (isinstance(self.extra_zoom_levels, int) and 0 <= self.extra_zoom_levels <= 4):
            raise ValueError(
                f"extra_zoom_levels must be an int in [0, 4], got {self.extra_zoom_levels!r}"
            )
