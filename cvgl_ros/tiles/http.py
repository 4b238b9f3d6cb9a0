"""A polite HTTP client for tile servers: pooling, rate and concurrency limits, retries.

Tile providers ban clients that hammer them, so every request goes through one
:class:`PoliteHttpClient` per source: a ``requests.Session`` with a connection pool sized to the
concurrency limit, a semaphore bounding requests in flight, a pacing rate limiter shared by all
threads, exponential backoff with full jitter on timeouts, connection errors, 5xx and 429, and
``Retry-After`` honoured by pausing *every* thread of the source, not just the one that got the
429.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from cvgl_ros.tiles.config import TileSourceConfig
from cvgl_ros.tiles.errors import TileDecodeError, TileFetchError, TileNotFoundError

log = logging.getLogger(__name__)

# Statuses worth retrying: timeouts at a proxy, throttling, transient server failures.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Statuses meaning "no tile here" (no retry, not an error of the server).
_NOT_FOUND_STATUSES = frozenset({204, 404, 410})
# A tile larger than this is not a tile.
_MAX_TILE_BYTES = 16 * 1024 * 1024


class RateLimiter:
    """Paces calls to at most ``rate_per_s`` on average (shared by threads), with a global pause.

    Pacing without bursts: each caller reserves the next free slot, 1 / rate apart, and
    sleeps until it. :meth:`pause_until` pushes every future slot past a time (Retry-After).
    """

    def __init__(self, rate_per_s: float, clock: Any = time.monotonic, sleep: Any = time.sleep):
        self._interval_s = 1.0 / rate_per_s
        self._next_s = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> float:
        """Block until this caller's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_s)
            self._next_s = slot + self._interval_s
        wait_s = slot - now
        if wait_s > 0:
            self._sleep(wait_s)
        return float(max(0.0, wait_s))

    def pause_until(self, t_s: float) -> None:
        """No slot is handed out before monotonic time ``t_s``."""
        with self._lock:
            self._next_s = max(self._next_s, t_s)


def parse_retry_after_s(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now_s is None else now_s
    return max(0.0, when.timestamp() - now)


class PoliteHttpClient:
    """GETs tile bytes under the limits of a :class:`TileSourceConfig`.

    Thread-safe; ``requests.Session`` is shared (its connection pool is thread-safe for GETs).
    """

    def __init__(self, config: TileSourceConfig, session: requests.Session | None = None) -> None:
        self.config = config
        self._own_session = session is None
        self.session = session or requests.Session()
        adapter = HTTPAdapter(
            pool_connections=1,
            pool_maxsize=config.max_concurrent_requests,
            max_retries=0,  # retries are ours: they must respect the rate limit and jitter
            pool_block=True,
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = config.user_agent
        for name, value in config.headers:
            self.session.headers[name] = value
        self._slots = threading.BoundedSemaphore(config.max_concurrent_requests)
        self._limiter = RateLimiter(config.max_requests_per_s)
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.counters: dict[str, int] = {
            "http_requests": 0,
            "http_retries": 0,
            "http_bytes": 0,
            "http_not_found": 0,
            "http_429": 0,
            "http_5xx": 0,
            "http_other_errors": 0,
            "http_timeouts": 0,
            "http_connection_errors": 0,
            "http_invalid_bodies": 0,
        }

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def _backoff_s(self, attempt: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * (2.0**attempt))
        with self._lock:
            return self._rng.uniform(0.0, cap)  # "full jitter"

    def get(
        self,
        url: str,
        params: dict[str, str] | None = None,
        validate: Callable[[bytes, str], object] | None = None,
    ) -> tuple[bytes, str]:
        """GET a tile.

        Args:
            url: the tile URL.
            params: query parameters (WMS).
            validate: called with (body, content type) of a 200 response; a
                :class:`TileDecodeError` it raises (truncated body, error page) is retried
                like a transient failure.

        Returns:
            (body, content_type).

        Raises:
            TileNotFoundError: HTTP 204/404/410.
            TileDecodeError: every attempt returned an invalid body.
            TileFetchError: no success after ``max_retries`` retries, a non-retryable HTTP
                error, or a Retry-After longer than ``backoff_max_s``.
        """
        cfg = self.config
        last_error = "no attempt"
        last_status: int | None = None
        last_decode_error: TileDecodeError | None = None
        for attempt in range(cfg.max_retries + 1):
            if attempt > 0:
                self._count("http_retries")
            self._limiter.acquire()
            retry_after_s: float | None = None
            with self._slots:
                self._count("http_requests")
                try:
                    body, status, content_type, headers = self._get_once(url, params)
                except requests.Timeout as exc:
                    self._count("http_timeouts")
                    last_error, last_status, status = f"timeout ({exc})", None, None
                except requests.RequestException as exc:  # refused, reset, truncated chunks
                    self._count("http_connection_errors")
                    last_error, last_status, status = f"connection error: {exc}", None, None
            if status is None:
                pass  # transport failure: retry
            elif status in _NOT_FOUND_STATUSES:
                self._count("http_not_found")
                raise TileNotFoundError(f"HTTP {status} for {url}")
            elif 200 <= status < 300:
                try:
                    if validate is not None:
                        validate(body, content_type)
                except TileDecodeError as exc:
                    self._count("http_invalid_bodies")
                    last_decode_error = exc
                    last_error, last_status = f"invalid body: {exc}", status
                else:
                    self._count("http_bytes", len(body))
                    return body, content_type
            else:
                last_status = status
                last_error = f"HTTP {status}"
                last_decode_error = None
                if status == 429:
                    self._count("http_429")
                    retry_after_s = parse_retry_after_s(headers.get("Retry-After"))
                elif status >= 500:
                    self._count("http_5xx")
                else:
                    self._count("http_other_errors")
                if status not in _RETRY_STATUSES:
                    raise TileFetchError(f"{last_error} for {url}", status_code=status)
            if attempt == cfg.max_retries:
                break
            delay_s = self._backoff_s(attempt)
            if retry_after_s is not None:
                if retry_after_s > cfg.backoff_max_s:
                    raise TileFetchError(
                        f"HTTP 429 for {url}: Retry-After {retry_after_s:.0f} s exceeds "
                        f"backoff_max_s={cfg.backoff_max_s}",
                        status_code=429,
                    )
                delay_s = max(delay_s, retry_after_s)
                self._limiter.pause_until(time.monotonic() + retry_after_s)
            log.debug("retry %d for %s in %.2f s (%s)", attempt + 1, url, delay_s, last_error)
            time.sleep(delay_s)
        if last_decode_error is not None:
            raise TileDecodeError(
                f"{last_decode_error} ({url}, {cfg.max_retries + 1} attempts)"
            ) from last_decode_error
        raise TileFetchError(
            f"{last_error} for {url} after {cfg.max_retries + 1} attempts",
            status_code=last_status,
        )

    def _get_once(self, url: str, params: dict[str, str] | None) -> tuple[bytes, int, str, Any]:
        cfg = self.config
        deadline_s = time.monotonic() + cfg.connect_timeout_s + cfg.read_timeout_s
        with self.session.get(
            url,
            params=params,
            timeout=(cfg.connect_timeout_s, cfg.read_timeout_s),
            stream=True,
            verify=cfg.verify_tls,
        ) as resp:
            if resp.status_code != 200:
                return b"", resp.status_code, resp.headers.get("Content-Type", ""), resp.headers
            chunks: list[bytes] = []
            size = 0
            # A server trickling bytes slowly never trips the read timeout: bound the total.
            for chunk in resp.iter_content(chunk_size=65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > _MAX_TILE_BYTES:
                    raise requests.ConnectionError(f"response larger than {_MAX_TILE_BYTES} bytes")
                if time.monotonic() > deadline_s:
                    raise requests.Timeout("response took longer than connect + read timeout")
            return b"".join(chunks), 200, resp.headers.get("Content-Type", ""), resp.headers

    def close(self) -> None:
        """Close the session (when this client created it)."""
        if self._own_session:
            self.session.close()
