"""A real XYZ + WMS tile server on 127.0.0.1, cutting tiles from a real orthophoto, with faults.

Tiles are cut with GDAL (``rasterio.warp.reproject`` into each tile's EPSG:3857 bounds), not
with the code under test, so georeference errors in cvgl_ros cannot cancel out. Fault injection
(:meth:`TileServer.set_fault`) answers the next N tile requests with an HTTP error, a delay, a
truncated body, an HTML page or a 429 with Retry-After.

The server lives in the test process; writers under test may be subprocesses.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import cv2
import mercantile
import numpy as np
import rasterio
from rasterio.transform import from_bounds
from rasterio.warp import Resampling, reproject, transform_bounds

_TILE_RE = re.compile(r"^/tiles/(\d+)/(\d+)/(\d+)\.(png|jpg)$")


class OrthoTiler:
    """Cuts EPSG:3857 tiles / WMS images from a GeoTIFF (8-bit stretched, alpha = valid)."""

    def __init__(self, path: Path, tile_size_px: int = 256) -> None:
        self.path = Path(path)
        self.tile_size_px = tile_size_px
        with rasterio.open(self.path) as ds:
            self.crs = ds.crs
            self.transform = ds.transform
            bands = [1, 2, 3] if ds.count >= 3 else [1, 1, 1]
            data = ds.read(bands).astype(np.float32)
            mask = ds.dataset_mask()
            self.bounds_lonlat = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
        # Same stretch as GeoTiffPatchSource: 2nd-98th percentile of the valid pixels per band.
        self.lo = np.zeros(3, np.float32)
        self.hi = np.zeros(3, np.float32)
        for b in range(3):
            values = data[b][mask > 0]
            self.lo[b], self.hi[b] = np.percentile(values, [2.0, 98.0])
        scaled = (data - self.lo[:, None, None]) * (255.0 / (self.hi - self.lo))[:, None, None]
        self.rgb = np.clip(scaled, 0, 255).astype(np.uint8)
        self.mask = np.where(mask > 0, 255, 0).astype(np.uint8)
        self._cache: dict[tuple[int, int, int, str], bytes | None] = {}
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()

    def render_bbox(
        self, bbox_3857: tuple[float, float, float, float], width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB and (H, W) bool valid of an EPSG:3857 bbox."""
        with self._render_lock:  # GDAL warps from numpy arrays are not re-entrant here
            return self._render_bbox(bbox_3857, width, height)

    def _render_bbox(
        self, bbox_3857: tuple[float, float, float, float], width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        dst_t = from_bounds(*bbox_3857, width, height)
        rgb = np.zeros((3, height, width), np.uint8)
        valid = np.zeros((height, width), np.uint8)
        reproject(
            self.rgb, rgb, src_transform=self.transform, src_crs=self.crs,
            dst_transform=dst_t, dst_crs="EPSG:3857", resampling=Resampling.bilinear,
        )  # fmt: skip
        reproject(
            self.mask, valid, src_transform=self.transform, src_crs=self.crs,
            dst_transform=dst_t, dst_crs="EPSG:3857", resampling=Resampling.nearest,
            src_nodata=0, dst_nodata=0,
        )  # fmt: skip
        return np.moveaxis(rgb, 0, -1), valid > 0

    def tile(self, z: int, x: int, y: int, fmt: str = "png") -> bytes | None:
        """Encoded tile, or None where the orthophoto has no valid pixel."""
        key = (z, x, y, fmt)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        b = mercantile.xy_bounds(x, y, z)
        rgb, valid = self.render_bbox(
            (b.left, b.bottom, b.right, b.top), *(self.tile_size_px,) * 2
        )
        data = None if not valid.any() else encode(rgb, valid, fmt)
        with self._lock:
            self._cache[key] = data
        return data

    def tiles(self, zoom: int) -> list[tuple[int, int, int]]:
        """Tiles intersecting the orthophoto at a zoom."""
        w, s, e, n = self.bounds_lonlat
        return [(t.z, t.x, t.y) for t in mercantile.tiles(w, s, e, n, [zoom])]


def encode(rgb: np.ndarray, valid: np.ndarray, fmt: str) -> bytes:
    """PNG (alpha = valid) or JPEG bytes."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        if not valid.all():
            bgr = np.dstack([bgr, np.where(valid, 255, 0).astype(np.uint8)])
        ok, buf = cv2.imencode(".png", bgr)
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError("encode failed")
    return bytes(buf.tobytes())


@dataclasses.dataclass
class Fault:
    """What to do to the next ``times`` tile/WMS requests."""

    times: int
    status: int | None = None  # answer with this HTTP status
    delay_s: float = 0.0  # sleep before answering
    truncate: bool = False  # send half the body with the full Content-Length, then close
    html: bool = False  # 200 with an HTML error page
    retry_after_s: float | None = None  # with status 429


class TileServer:
    """ThreadingHTTPServer on 127.0.0.1 serving ``/tiles/{z}/{x}/{y}.png|jpg`` and ``/wms``."""

    def __init__(self, tiler: OrthoTiler) -> None:
        self.tiler = tiler
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.requests: list[tuple[float, str]] = []
        self.headers: list[dict[str, str]] = []
        self.fault_hits = 0
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                server._handle(self)

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that time out or are killed reset connections: expected here

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def template(self, fmt: str = "png") -> str:
        return f"{self.base_url}/tiles/{{z}}/{{x}}/{{y}}.{fmt}"

    @property
    def wms_url(self) -> str:
        return f"wms:{self.base_url}/wms"

    def set_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def __enter__(self) -> TileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next_fault(self) -> Fault | None:
        with self._lock:
            while self._faults and self._faults[0].times <= 0:
                self._faults.pop(0)
            if not self._faults:
                return None
            f = self._faults[0]
            f.times -= 1
            self.fault_hits += 1
            return f

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((time.monotonic(), h.path))
            self.headers.append(dict(h.headers.items()))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._respond(h)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        fault = self._next_fault()
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault is not None and fault.status is not None:
            headers = {}
            if fault.retry_after_s is not None:
                headers["Retry-After"] = f"{fault.retry_after_s:g}"
            return self._send(h, fault.status, b"error\n", "text/plain", headers)
        if fault is not None and fault.html:
            page = b"<html><body><h1>Service temporarily unavailable</h1></body></html>"
            return self._send(h, 200, page, "text/html")
        body: bytes | None
        ctype = "image/png"
        m = _TILE_RE.match(url.path)
        if m:
            z, x, y, fmt = int(m[1]), int(m[2]), int(m[3]), m[4]
            body = self.tiler.tile(z, x, y, fmt)
            ctype = "image/png" if fmt == "png" else "image/jpeg"
        elif url.path == "/wms":
            q = {k.upper(): v[0] for k, v in parse_qs(url.query).items()}
            if q.get("REQUEST") != "GetMap" or q.get("CRS", q.get("SRS")) != "EPSG:3857":
                xml = b'<?xml version="1.0"?><ServiceExceptionReport><ServiceException>'
                xml += b"InvalidCRS</ServiceException></ServiceExceptionReport>"
                return self._send(h, 200, xml, "application/vnd.ogc.se_xml")
            bbox = tuple(float(v) for v in q["BBOX"].split(","))
            rgb, valid = self.tiler.render_bbox(bbox, int(q["WIDTH"]), int(q["HEIGHT"]))  # type: ignore[arg-type]
            fmt = "png" if q.get("FORMAT", "image/png") == "image/png" else "jpg"
            body, ctype = encode(rgb, valid, fmt), q.get("FORMAT", "image/png")
        else:
            body = None
        if body is None:
            return self._send(h, 404, b"no tile\n", "text/plain")
        if fault is not None and fault.truncate:
            h.send_response(200)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return None
        return self._send(h, 200, body, ctype)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
