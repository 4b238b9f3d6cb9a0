"""Frozen, validated configurations of the tile subsystem.

Every field carries its unit in its name; ``__post_init__`` raises ``ValueError`` naming the
field on a bad value, so a typo in a parameter file fails at start-up, not mid-mission. Fields
declared with :func:`~cvgl_ros.core.schema.param` are node parameters (the HTTP and WMS options
only for a source of that kind); the others are internals with their defaults.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cvgl_ros.core.schema import check_ranges, param

DEFAULT_USER_AGENT = "cvgl_ros/0.1 (aerial tile cache; +https://github.com/cvgl-ros/cvgl_ros)"

SourceKind = Literal["xyz", "wms", "mbtiles", "geotiff"]
HTTP_SOURCE_KINDS: tuple[str, ...] = ("xyz", "wms")
"""Source kinds fetched over HTTP (cached in the tile cache, prefetched)."""


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
        source: parameter ``tiles.source``; its kind (:func:`source_kind`) selects which
            other ``tiles.*`` parameters exist.
        source_id: cache key of this source; derived from ``source`` when empty. Two configs
            with the same id share cached tiles, so change it when the imagery changes.
        tile_size_px: parameter ``tiles.tile_size_px`` (HTTP sources).
        min_zoom: parameter ``tiles.min_zoom`` (HTTP sources).
        max_zoom: parameter ``tiles.max_zoom`` (HTTP sources).
        subdomains: parameter ``tiles.subdomains`` (XYZ).
        headers: parameter ``tiles.headers`` (HTTP sources).
        user_agent: parameter ``tiles.user_agent`` (HTTP sources).
        connect_timeout_s: TCP connect timeout, seconds.
        read_timeout_s: time allowed between bytes of the response, seconds.
        max_retries: retries after the first attempt on timeouts, connection errors, 5xx, 429.
        backoff_base_s: first retry delay, seconds; doubles each retry, with full jitter.
        backoff_max_s: cap of one retry delay (and of an honoured Retry-After), seconds.
        max_concurrent_requests: requests in flight at once, across all threads.
        max_requests_per_s: parameter ``tiles.max_requests_per_s`` (HTTP sources).
        verify_tls: parameter ``tiles.verify_tls`` (HTTP sources).
        wms_layers: parameter ``tiles.wms_layers`` (WMS).
        wms_styles: parameter ``tiles.wms_styles`` (WMS).
        wms_format: parameter ``tiles.wms_format`` (WMS).
        wms_version: parameter ``tiles.wms_version`` (WMS).
    """

    source: str = param(
        description="""the aerial imagery: a GeoTIFF path, an .mbtiles file, an XYZ/WMTS URL
            template (https://{s}.tile.example/{z}/{x}/{y}.jpg; {q} quadkey, {-y} TMS row) or
            wms:https://host/wms (GetMap base URL). REQUIRED. Its kind declares the HTTP
            (tiles.*, cache.*) and WMS (tiles.wms_*) options.""",
        kind_of=source_kind,
    )
    source_id: str = ""
    tile_size_px: int = param(
        256,
        description="edge of a tile, pixels: 256 for most XYZ services, 512 for some.",
        range=(256, 512),
        only_for=("source", HTTP_SOURCE_KINDS),
    )
    min_zoom: int = param(
        0,
        description="lowest zoom level the source serves.",
        range=(0, 24),
        only_for=("source", HTTP_SOURCE_KINDS),
    )
    max_zoom: int = param(
        19,
        description="highest zoom level the source serves.",
        range=(0, 24),
        only_for=("source", HTTP_SOURCE_KINDS),
    )
    subdomains: tuple[str, ...] = param(
        ("a", "b", "c"),
        description="values substituted for {s} in the URL template, round-robin.",
        only_for=("source", ("xyz",)),
    )
    headers: tuple[tuple[str, str], ...] = param(
        (),
        description="extra HTTP headers as 'Name: value' strings (API keys, referer).",
        only_for=("source", HTTP_SOURCE_KINDS),
    )
    user_agent: str = param(
        DEFAULT_USER_AGENT,
        description="""the User-Agent header; tile usage policies require one that identifies
            the application (and a contact).""",
        only_for=("source", HTTP_SOURCE_KINDS),
    )
    connect_timeout_s: float = 3.05
    read_timeout_s: float = 10.0
    max_retries: int = 3
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    max_concurrent_requests: int = 4
    max_requests_per_s: float = param(
        10.0,
        description="""average request rate limit (token bucket), requests per second: the
            tile server's usage policy.""",
        range=(0.01, 100000.0),
        only_for=("source", HTTP_SOURCE_KINDS),
    )
    verify_tls: bool = param(
        True,
        description="verify HTTPS certificates.",
        only_for=("source", HTTP_SOURCE_KINDS),
    )
    wms_layers: str = param(
        "",
        description="WMS LAYERS (required for a WMS source).",
        only_for=("source", ("wms",)),
    )
    wms_styles: str = param("", description="WMS STYLES.", only_for=("source", ("wms",)))
    wms_format: str = param(
        "image/jpeg",
        description="WMS FORMAT: image/jpeg or image/png.",
        only_for=("source", ("wms",)),
    )
    wms_version: str = param(
        "1.3.0",
        description="WMS protocol version: 1.3.0 or 1.1.1.",
        only_for=("source", ("wms",)),
    )

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
        check_ranges(self)
        if self.tile_size_px not in (256, 512):
            raise ValueError(f"tile_size_px must be 256 or 512, got {self.tile_size_px!r}")
        if self.max_zoom < self.min_zoom:
            raise ValueError(f"max_zoom must be >= min_zoom, got {self.max_zoom!r}")
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
        patch_size_px: parameter ``patch.patch_size_px``.
        patch_m_per_px: parameter ``patch.patch_m_per_px``.
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

    patch_size_px: int = param(
        512,
        description="""edge of the square, north-up aerial patch, pixels (without
            view.adaptive): the camera footprint plus 3 sigma of the GNSS prior, with margin.""",
        range=(8, 16384),
    )
    patch_m_per_px: float = param(
        0.5,
        description="""ground sampling distance of the patch, metres per pixel (without
            view.adaptive): about the camera's, never much finer than the map's.""",
        range=(0.001, 1000.0),
    )
    min_valid_fraction: float = 0.0
    zoom: int | None = None
    zoom_coarse_tolerance: float = 1.15
    fetch_missing: bool = True
    fetch_budget_s: float = 2.0

    def __post_init__(self) -> None:
        check_ranges(self)
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
        max_size_bytes: parameter ``cache.max_size_bytes`` (HTTP sources).
        evict_to_fraction: eviction brings the size down to this fraction of the bound, so
            that eviction runs rarely rather than on every insert.
        busy_timeout_s: how long a writer waits for another process's lock, seconds.
        synchronous: SQLite ``synchronous`` pragma; ``NORMAL`` with WAL survives process
            crashes, ``FULL`` also survives power loss at some write cost.
        memory_tiles: decoded tiles kept in memory per process (0 disables).
        touch_flush_interval_s: last-access times of read tiles are batched and written at
            most this often, seconds (reads never wait on the write lock).
    """

    max_size_bytes: int = param(
        2 * 1024**3,
        description="""bound on the tile cache's stored tile bytes; least-recently-used tiles
            are evicted beyond it.""",
        range=(1, 2**50),
    )
    evict_to_fraction: float = 0.9
    busy_timeout_s: float = 10.0
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    memory_tiles: int = 256
    touch_flush_interval_s: float = 5.0

    def __post_init__(self) -> None:
        check_ranges(self)
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
