"""Georeference of a north-up metric patch, and the Web Mercator tile grid.

The patch frame is an azimuthal equidistant (AEQD) projection on the WGS84 ellipsoid centred on
the fix: patch pixel (u, v) sits at (east, north) = ((u + 0.5 - W/2) m, (H/2 - v - 0.5) m) times
``m_per_px``, and its WGS84 position is the end of the geodesic of length hypot(east, north) at
azimuth atan2(east, north) from the centre (``pyproj.Geod.fwd``: that *is* the ellipsoidal AEQD).

Error against the exact local ENU tangent plane (``core.geodesy.LocalEnu``): distances from the
centre are exact in AEQD, the tangent plane shortens them by rho^3 / (6 R^2) (0.7 mm at 1 km,
0.1 mm at 500 m) and both frames share north at the centre; for patches up to a few kilometres the
difference is far below a pixel. Grid convergence (true north at an off-centre pixel differs from
the patch's north by about (east / R) tan(lat) rad) is inherent to any local Cartesian frame.

Dense per-pixel projection is slow in Python, so positions are computed exactly with pyproj on a
coarse grid of control points and interpolated bilinearly between them (the map is smooth: the
interpolation error is below 1e-2 px for the default 32 px grid step, checked by a property
test); :func:`source_pixel_maps` is what every patch source uses.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import mercantile
import numpy as np
import pyproj

from cvgl_ros.core.errors import InvalidInputError, NoImageryError
from cvgl_ros.core.types import BoolArray, FloatArray
from cvgl_ros.tiles.errors import OutsideTileGridError

# Web Mercator is defined up to this latitude (the square world), degrees.
WEB_MERCATOR_MAX_LAT_DEG = 85.05112877980659

_GEOD = pyproj.Geod(ellps="WGS84")


def check_lat_lon(lat_deg: float, lon_deg: float) -> tuple[float, float]:
    """Validate a WGS84 position.

    Raises:
        InvalidInputError: NaN, infinite or out-of-range latitude/longitude.
    """
    try:
        lat, lon = float(lat_deg), float(lon_deg)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"latitude/longitude must be numbers, got {lat_deg!r}") from exc
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise InvalidInputError(f"fix must be finite, got lat={lat}, lon={lon} degrees")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise InvalidInputError(f"fix out of range: lat={lat}, lon={lon} degrees")
    return lat, lon


def check_in_web_mercator(lat_deg: float) -> None:
    """Raise :class:`OutsideTileGridError` beyond the Web Mercator latitude limit."""
    if abs(lat_deg) >= WEB_MERCATOR_MAX_LAT_DEG:
        raise OutsideTileGridError(
            f"latitude {lat_deg:.6f} deg is outside the Web Mercator tile grid "
            f"(|lat| < {WEB_MERCATOR_MAX_LAT_DEG:.4f}); XYZ/WMS imagery cannot cover it"
        )


def patch_pixel_to_en(
    u_px: FloatArray, v_px: FloatArray, size_px: int, m_per_px: float
) -> tuple[FloatArray, FloatArray]:
    """Pixel centres (u right, v down) of a square patch -> (east, north) metres from its centre.

    Same convention as :meth:`cvgl_ros.core.types.AerialPatch.pixel_to_en`.
    """
    east_m = (np.asarray(u_px, np.float64) + 0.5 - 0.5 * size_px) * m_per_px
    north_m = (0.5 * size_px - np.asarray(v_px, np.float64) - 0.5) * m_per_px
    return east_m, north_m


def en_to_lonlat(
    center_lat_deg: float, center_lon_deg: float, east_m: FloatArray, north_m: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Ellipsoidal azimuthal-equidistant inverse: (east, north) metres -> (lon, lat) degrees.

    Args:
        center_lat_deg: latitude of the projection centre, degrees.
        center_lon_deg: longitude of the projection centre, degrees.
        east_m: (...) float64, metres east of the centre.
        north_m: (...) float64, metres north of the centre (same shape).

    Returns:
        (lon_deg, lat_deg), each (...) float64, WGS84 degrees.
    """
    e = np.asarray(east_m, np.float64)
    n = np.asarray(north_m, np.float64)
    shape = np.broadcast(e, n).shape
    e, n = np.broadcast_to(e, shape).ravel(), np.broadcast_to(n, shape).ravel()
    az_deg = np.degrees(np.arctan2(e, n))
    dist_m = np.hypot(e, n)
    lon, lat, _ = _GEOD.fwd(
        np.full(e.shape, center_lon_deg), np.full(e.shape, center_lat_deg), az_deg, dist_m
    )
    return np.asarray(lon, np.float64).reshape(shape), np.asarray(lat, np.float64).reshape(shape)


def lonlat_to_en(
    center_lat_deg: float, center_lon_deg: float, lon_deg: FloatArray, lat_deg: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Forward of :func:`en_to_lonlat`: WGS84 (lon, lat) degrees -> (east, north) metres."""
    lon = np.asarray(lon_deg, np.float64).ravel()
    lat = np.asarray(lat_deg, np.float64).ravel()
    az_deg, _, dist_m = _GEOD.inv(
        np.full(lon.shape, center_lon_deg), np.full(lon.shape, center_lat_deg), lon, lat
    )
    az = np.radians(np.asarray(az_deg, np.float64))
    d = np.asarray(dist_m, np.float64)
    shape = np.shape(lon_deg)
    return (d * np.sin(az)).reshape(shape), (d * np.cos(az)).reshape(shape)


def source_pixel_maps(
    center_lat_deg: float,
    center_lon_deg: float,
    size_px: int,
    m_per_px: float,
    lonlat_to_src_px: Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]],
    step_px: int = 32,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per-pixel source coordinates of a patch, for ``cv2.remap``.

    Args:
        center_lat_deg: patch centre latitude, degrees.
        center_lon_deg: patch centre longitude, degrees.
        size_px: patch edge, pixels.
        m_per_px: patch resolution, metres per pixel.
        lonlat_to_src_px: maps (lon_deg, lat_deg) arrays to continuous source pixel coordinates
            (col, row) where integer values are pixel *centres* (cv2 convention).
        step_px: spacing of the exactly projected control points, pixels.

    Returns:
        (map_x, map_y, offset_x_px, offset_y_px): the source column of patch pixel (v, u) is
        ``map_x[v, u] + offset_x_px`` (rows likewise); maps are (size_px, size_px) float32
        relative to the integer offsets so that float32 keeps sub-pixel precision even for
        global Web Mercator pixel coordinates (tens of millions at high zoom).
    """
    n_ctrl = max(2, math.ceil((size_px - 1) / step_px) + 1)
    ctrl_px = np.linspace(0.0, size_px - 1.0, n_ctrl)
    uu, vv = np.meshgrid(ctrl_px, ctrl_px)
    e, n = patch_pixel_to_en(uu, vv, size_px, m_per_px)
    lon, lat = en_to_lonlat(center_lat_deg, center_lon_deg, e, n)
    sx, sy = lonlat_to_src_px(lon, lat)
    sx = np.asarray(sx, np.float64).reshape(n_ctrl, n_ctrl)
    sy = np.asarray(sy, np.float64).reshape(n_ctrl, n_ctrl)
    if not (np.all(np.isfinite(sx)) and np.all(np.isfinite(sy))):
        raise OutsideTileGridError("patch corners do not project into the source's CRS")
    off_x = math.floor(float(sx.min()))
    off_y = math.floor(float(sy.min()))
    sx -= off_x
    sy -= off_y
    if n_ctrl == size_px:
        return sx.astype(np.float32), sy.astype(np.float32), off_x, off_y
    # Separable linear interpolation between control points with exact weights (cv2.remap
    # and cv2.resize quantise weights to 1/32 of a control cell; BLAS products stall on a
    # loaded CPU): two gathers and a weighted sum per axis.
    i, f = _interp_index(n_ctrl, size_px)
    f32 = f.astype(np.float32)[:, None]
    maps = []
    for grid in (sx, sy):
        cols = (grid[:, i] * (1.0 - f) + grid[:, i + 1] * f).astype(np.float32)  # (n_ctrl, size)
        top = cols[i, :]
        out = cols[i + 1, :]
        out -= top
        out *= f32
        out += top
        maps.append(out)
    map_x, map_y = maps
    return map_x, map_y, off_x, off_y


def centre_step_px(map_x: np.ndarray, map_y: np.ndarray) -> float:
    """Source pixels per patch pixel at the patch centre (the map is near-linear there).

    Args:
        map_x: (S, S) float32 source columns of the patch pixels (a :func:`source_pixel_maps`
            map, possibly shifted).
        map_y: (S, S) float32 source rows.

    Returns:
        The longer of the source steps of one patch pixel along u and along v; 1.0 for a
        one-pixel patch.
    """
    size = map_x.shape[0]
    if size <= 1:
        return 1.0
    c = size // 2
    du = math.hypot(map_x[c, c] - map_x[c, c - 1], map_y[c, c] - map_y[c, c - 1])
    dv = math.hypot(map_x[c, c] - map_x[c - 1, c], map_y[c, c] - map_y[c - 1, c])
    return max(du, dv)


def check_valid_fraction(
    valid_mask: BoolArray,
    min_valid_fraction: float,
    source_id: str,
    lat_deg: float,
    lon_deg: float,
    detail: str = "",
) -> None:
    """Refuse a patch with no valid pixel or less than ``min_valid_fraction`` valid.

    Args:
        valid_mask: (S, S) bool, True where the patch has imagery.
        min_valid_fraction: see :class:`~cvgl_ros.tiles.config.PatchConfig`.
        source_id: the patch source, for the message.
        lat_deg: patch centre latitude, degrees (for the message).
        lon_deg: patch centre longitude, degrees (for the message).
        detail: appended to the message (e.g. the zoom level and missing tiles).

    Raises:
        NoImageryError: too little of the patch is valid.
    """
    fraction = float(valid_mask.mean())
    if fraction == 0.0 or fraction < min_valid_fraction:
        raise NoImageryError(
            f"{source_id}: only {100 * fraction:.1f} % of the patch at "
            f"({lat_deg:.6f}, {lon_deg:.6f}) has imagery{detail}"
        )


@functools.lru_cache(maxsize=8)
def _interp_index(n_ctrl: int, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower control index (size_px,) int and fraction (size_px,) float64 of each pixel."""
    t = np.arange(size_px, dtype=np.float64) * ((n_ctrl - 1) / (size_px - 1.0))
    i = np.minimum(np.floor(t).astype(np.int64), n_ctrl - 2)
    f = t - i
    i.setflags(write=False)
    f.setflags(write=False)
    return i, f


@functools.lru_cache(maxsize=32)
def _transformer(src: str, dst: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def lonlat_transformer(dst_crs_wkt_or_code: str) -> pyproj.Transformer:
    """A cached WGS84 (lon, lat) -> ``dst`` transformer (creating one costs tens of ms)."""
    return _transformer("EPSG:4326", dst_crs_wkt_or_code)


def ground_m_per_px_at(
    lonlat_to_pixel: Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]],
    lat_deg: float,
    lon_deg: float,
    step_m: float = 10.0,
) -> float:
    """Ground size of one raster pixel at a WGS84 point, metres (geometric mean of both axes).

    Steps ``step_m`` east and north along geodesics and measures how many raster pixels each
    step spans, so it holds for any CRS (projected, geographic, rotated grids).

    Args:
        lonlat_to_pixel: WGS84 (lon, lat) arrays -> raster pixel (col, row) arrays.
        lat_deg: latitude, degrees.
        lon_deg: longitude, degrees.
        step_m: geodesic step, metres.
    """
    lat, lon = check_lat_lon(lat_deg, lon_deg)
    lons, lats, _ = _GEOD.fwd([lon, lon], [lat, lat], [90.0, 0.0], [step_m, step_m])
    col, row = lonlat_to_pixel(np.array([lon, *lons]), np.array([lat, *lats]))
    d_east = math.hypot(float(col[1] - col[0]), float(row[1] - row[0]))
    d_north = math.hypot(float(col[2] - col[0]), float(row[2] - row[0]))
    if not (d_east > 0.0 and d_north > 0.0 and math.isfinite(d_east * d_north)):
        raise InvalidInputError(f"raster pixel size undefined at ({lat}, {lon})")
    return float(step_m / math.sqrt(d_east * d_north))


def web_mercator_ground_m_per_px(lat_deg: float, zoom: int, tile_size_px: int = 256) -> float:
    """Ground distance of one Web Mercator pixel at a latitude, metres per pixel.

    The projected tile width comes from mercantile, the latitude's scale factor from pyproj.
    """
    left, _, right, _ = mercantile.xy_bounds(0, 0, zoom)
    projected_m_per_px = (right - left) / tile_size_px
    factors = _web_mercator_proj().get_factors(0.0, float(lat_deg))
    return float(projected_m_per_px / factors.parallel_scale)


@functools.lru_cache(maxsize=1)
def _web_mercator_proj() -> pyproj.Proj:
    return pyproj.Proj("EPSG:3857")


def choose_zoom(
    lat_deg: float,
    m_per_px: float,
    tile_size_px: int,
    min_zoom: int,
    max_zoom: int,
    coarse_tolerance: float = 1.15,
) -> int:
    """The coarsest zoom whose ground resolution is at most ``m_per_px * coarse_tolerance``.

    Clamped to [min_zoom, max_zoom]; coarser tiles than requested are then upsampled and finer
    ones area-averaged by the patch builder.
    """
    res0 = web_mercator_ground_m_per_px(lat_deg, 0, tile_size_px)  # halves at each zoom
    z = math.ceil(math.log2(res0 / (m_per_px * coarse_tolerance)) - 1e-9)
    return int(min(max(z, min_zoom), max_zoom))


def tiles_in_radius(
    lat_deg: float, lon_deg: float, radius_m: float, zoom: int
) -> list[tuple[int, int, int]]:
    """XYZ tiles whose square intersects a circle, ordered nearest first (ring order).

    Args:
        lat_deg: circle centre latitude, degrees.
        lon_deg: circle centre longitude, degrees.
        radius_m: circle radius, metres (ground distance).
        zoom: zoom level.

    Returns:
        (z, x, y) tuples sorted by the distance from the centre to the nearest point of each tile.
    """
    lat, lon = check_lat_lon(lat_deg, lon_deg)
    check_in_web_mercator(lat)
    # Bounding box of the circle via geodesics to the four cardinal directions.
    lons, lats, _ = _GEOD.fwd([lon] * 4, [lat] * 4, [0.0, 90.0, 180.0, 270.0], [radius_m] * 4)
    south = max(min(lats), -WEB_MERCATOR_MAX_LAT_DEG + 1e-9)
    north = min(max(lats), WEB_MERCATOR_MAX_LAT_DEG - 1e-9)
    west, east = min(lons), max(lons)
    out: list[tuple[float, tuple[int, int, int]]] = []
    for t in mercantile.tiles(west, south, east, north, [zoom]):
        b = mercantile.bounds(t)
        near_lon = min(max(lon, b.west), b.east)
        near_lat = min(max(lat, b.south), b.north)
        _, _, d = _GEOD.inv(lon, lat, near_lon, near_lat)
        if d <= radius_m:
            out.append((float(d), (t.z, t.x, t.y)))
    out.sort(key=lambda item: item[0])
    return [t for _, t in out]


def tiles_in_bbox(
    west_deg: float, south_deg: float, east_deg: float, north_deg: float, zoom: int
) -> list[tuple[int, int, int]]:
    """XYZ tiles covering a WGS84 bounding box, ordered from its centre outwards."""
    for v in (west_deg, south_deg, east_deg, north_deg):
        if not math.isfinite(v):
            raise InvalidInputError(f"bbox must be finite, got {v}")
    if not (west_deg < east_deg and south_deg < north_deg):
        raise InvalidInputError(
            f"bbox must be W,S,E,N with W < E and S < N, got {west_deg},{south_deg},"
            f"{east_deg},{north_deg}"
        )
    south = max(south_deg, -WEB_MERCATOR_MAX_LAT_DEG + 1e-9)
    north = min(north_deg, WEB_MERCATOR_MAX_LAT_DEG - 1e-9)
    c_lon, c_lat = 0.5 * (west_deg + east_deg), 0.5 * (south + north)
    tiles = list(mercantile.tiles(west_deg, south, east_deg, north, [zoom]))

    def dist(t: mercantile.Tile) -> float:
        b = mercantile.bounds(t)
        return float(
            _GEOD.inv(c_lon, c_lat, 0.5 * (b.west + b.east), 0.5 * (b.south + b.north))[2]
        )

    return [(t.z, t.x, t.y) for t in sorted(tiles, key=dist)]


def quadkey(z: int, x: int, y: int) -> str:
    """Bing-style quadkey of a tile (mercantile)."""
    return str(mercantile.quadkey(mercantile.Tile(x, y, z)))
