"""Coinbase REST over aiohttp: the public market endpoints, paced and retried.

Every request waits for a token of the pacer, so the daemon stays under the public limit
(10 requests/s per IP) whatever asks. 429 and 5xx answers and connection errors are retried
with capped full-jitter backoff (honouring Retry-After); other 4xx answers raise at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from trader.coinbase import messages, rest_bodies
from trader.errors import FrameError, TraderError
from trader.kernels.series import CandleArrays

log = logging.getLogger(__name__)

API = "/api/v3/brokerage"
CANDLES_PER_REQUEST = 300  # Coinbase allows 350 buckets; 300 keeps clear of its edge cases
GRANULARITY_NAMES = {60: "ONE_MINUTE", 300: "FIVE_MINUTE", 900: "FIFTEEN_MINUTE",
                     1800: "THIRTY_MINUTE", 3600: "ONE_HOUR", 7200: "TWO_HOUR",
                     14400: "FOUR_HOUR", 21600: "SIX_HOUR", 86400: "ONE_DAY"}


class RestError(TraderError):
    """A REST request failed for good (after retries, or with a non-retryable status)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class Pacer:
    """Spaces calls `1 / rate_per_s` apart (a token bucket with a burst of one)."""

    def __init__(self, rate_per_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self._monotonic = monotonic
        self._next_s = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = self._monotonic()
            delay = self._next_s - now
            self._next_s = max(now, self._next_s) + 1.0 / self.rate_per_s
            if delay > 0:
                await asyncio.sleep(delay)


class PublicRest:
    """The public market endpoints: products, one product, candles."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, pacer: Pacer,
                 max_attempts: int = 6, backoff_max_s: float = 30.0,
                 rng: random.Random | None = None) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self.pacer = pacer
        self._max_attempts = max_attempts
        self._backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        self.counters = {"requests": 0, "retries": 0, "rate_limited": 0, "errors": 0}

    async def candles(self, product_id: str, start_s: int, end_s: int,
                      granularity_s: int) -> CandleArrays:
        """Candles with start_s <= open time < end_s, oldest first; quiet buckets absent.

        Ranges longer than one request allows are fetched page by page.
        """
        step_s = CANDLES_PER_REQUEST * granularity_s
        pages = []
        for page_start in range(start_s, end_s, step_s):
            page_end = min(page_start + step_s, end_s)
            body = await self.get_json(f"/market/products/{product_id}/candles", {
                "start": str(page_start), "end": str(page_end),
                "granularity": GRANULARITY_NAMES[granularity_s]})
            pages.append(_parsed(rest_bodies.parse_candles, body))
        return rest_bodies.concat_candles(pages).between(start_s, end_s)

    async def products(self) -> list[Any]:
        body = await self.get_json("/market/products", {"product_type": "SPOT"})
        return _parsed(rest_bodies.parse_products, body)

    async def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET `API + path`, retrying what is worth retrying; the decoded JSON body."""
        url = f"{self._base}{API}{path}"
        for attempt in range(1, self._max_attempts + 1):
            await self.pacer.wait()
            self.counters["requests"] += 1
            try:
                async with self._session.get(url, params=params) as response:
                    body = await response.read()
                    retry_after = _retry_after_s(response.headers.get("Retry-After"))
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, body, retry_after = None, str(exc).encode(), None
            if status == 200:
                return _decoded(body, path)
            self._count_failure(status)
            if status is not None and status < 500 and status != 429:
                raise RestError(f"GET {path}: HTTP {status}: {body[:200]!r}", status)
            if attempt < self._max_attempts:
                self.counters["retries"] += 1
                await asyncio.sleep(retry_after or self._backoff_s(attempt))
        raise RestError(f"GET {path}: gave up after {self._max_attempts} attempts "
                        f"(last: {status or body[:200]!r})", status)

    def _count_failure(self, status: int | None) -> None:
        self.counters["rate_limited" if status == 429 else "errors"] += 1

    def _backoff_s(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, 0.25 s * 2^attempt)]."""
        return self._rng.uniform(0, min(self._backoff_max_s, 0.25 * 2**attempt))


def _decoded(body: bytes, path: str) -> Any:
    try:
        return messages.decode(body)
    except FrameError as exc:
        raise RestError(f"GET {path}: {exc}") from exc


def _parsed(parse: Callable[[Any], Any], body: Any) -> Any:
    try:
        return parse(body)
    except FrameError as exc:
        raise RestError(f"unexpected REST body: {exc}") from exc


def _retry_after_s(value: str | None) -> float | None:
    try:
        return min(60.0, max(0.0, float(value))) if value else None
    except ValueError:
        return None
