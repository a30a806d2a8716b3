"""Coinbase REST over aiohttp: the public market endpoints and the authenticated order,
fill and account endpoints, each paced under its limit and retried.

Every request waits for a token of its pacer, so the daemon stays under the public limit
(10 requests/s per IP) and the private one (30/s per user) whatever asks. 429 and 5xx
answers and connection errors are retried with capped full-jitter backoff (honouring
Retry-After); other 4xx answers raise at once. Creating an order is the exception: once the
request may have reached Coinbase, a timeout, a dropped connection or a 5xx raises
`OutcomeUnknown` instead of retrying, and the caller looks the order up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import orjson

from trader.coinbase import messages, orders, rest_bodies
from trader.errors import FrameError, TraderError
from trader.kernels.series import CandleArrays
from trader.types import Fill, OrderIntent, OrderUpdate

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


class OutcomeUnknown(TraderError):
    """A create-order request may or may not have been accepted: look it up, never resend it
    under a new client order id."""


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


RestTimer = Callable[[str, str, float], None]  # (method, path, seconds one attempt took)


class PublicRest:
    """The public market endpoints: products, one product, candles."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, pacer: Pacer,
                 max_attempts: int = 6, backoff_max_s: float = 30.0,
                 rng: random.Random | None = None, observe: RestTimer | None = None) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self.pacer = pacer
        self._max_attempts = max_attempts
        self._backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        self._observe = observe  # e.g. a latency histogram; pacing and backoff excluded
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

    async def server_time_s(self) -> int:
        """The exchange's clock (`GET /time`), unix seconds."""
        return _parsed(rest_bodies.parse_server_time_s, await self.get_json("/time"))

    async def products(self) -> list[Any]:
        body = await self.get_json("/market/products", {"product_type": "SPOT"})
        return _parsed(rest_bodies.parse_products, body)

    async def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET `API + path`, retrying what is worth retrying; the decoded JSON body."""
        url = f"{self._base}{API}{path}"
        for attempt in range(1, self._max_attempts + 1):
            await self.pacer.wait()
            self.counters["requests"] += 1
            started = time.perf_counter()
            try:
                async with self._session.get(url, params=params) as response:
                    body = await response.read()
                    retry_after = _retry_after_s(response.headers.get("Retry-After"))
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, body, retry_after = None, str(exc).encode(), None
            self._observed("GET", path, started)
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

    def _observed(self, method: str, path: str, started: float) -> None:
        if self._observe is not None:
            self._observe(method, path, time.perf_counter() - started)

    def _count_failure(self, status: int | None) -> None:
        self.counters["rate_limited" if status == 429 else "errors"] += 1

    def _backoff_s(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, 0.25 s * 2^attempt)]."""
        return self._rng.uniform(0, min(self._backoff_max_s, 0.25 * 2**attempt))


Authorizer = Callable[[str, str], str]  # (method, full URL) -> Authorization header value
MAX_PAGES = 1000  # a cursor loop stops here rather than spin on a server that never ends


class PrivateRest(PublicRest):
    """The authenticated endpoints; a fresh JWT per request from `authorize`."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, pacer: Pacer,
                 authorize: Authorizer, timeout_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(session, base_url, pacer, **kwargs)
        self._authorize = authorize
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.counters.update({"orders_sent": 0, "outcome_unknown": 0})

    async def create_order(self, intent: OrderIntent) -> orders.CreateResult:
        """Send once (a 429 is retried: Coinbase did not take it); see `OutcomeUnknown`."""
        body = orders.create_order_body(intent)
        path = "/orders"
        for attempt in range(1, self._max_attempts + 1):
            await self.pacer.wait()
            self.counters["requests"] += 1
            self.counters["orders_sent"] += 1
            status, raw, retry_after = await self._send("POST", path, None, body)
            if status == 200:
                return _parsed(lambda b: orders.parse_create_response(
                    b, intent.client_order_id), _decoded(raw, path))
            self._count_failure(status)
            if status == 429 and attempt < self._max_attempts:
                self.counters["retries"] += 1
                await asyncio.sleep(retry_after or self._backoff_s(attempt))
                continue
            if status is None or status >= 500:
                self.counters["outcome_unknown"] += 1
                raise OutcomeUnknown(f"POST {path} {intent.client_order_id}: "
                                     f"{status or raw[:200]!r}")
            raise RestError(f"POST {path}: HTTP {status}: {raw[:200]!r}", status)
        raise RestError(f"POST {path}: rate limited {self._max_attempts} times", 429)

    async def cancel_orders(self, order_ids: Sequence[str]) -> list[orders.CancelResult]:
        results = []
        for start in range(0, len(order_ids), 100):
            body = await self.request_json("POST", "/orders/batch_cancel", None,
                                           orders.cancel_body(list(order_ids[start:start + 100])))
            results += _parsed(orders.parse_cancel_results, body)
        return results

    async def get_order(self, order_id: str) -> OrderUpdate:
        body = await self.request_json("GET", f"/orders/historical/{order_id}")
        return _parsed(lambda b: orders.parse_order(b.get("order")), body)

    async def list_orders(self, status: str | None = "OPEN", product_id: str | None = None,
                          start_s: int | None = None) -> list[OrderUpdate]:
        params = {"limit": "250"}
        if status:
            params["order_status"] = status
        if product_id:
            params["product_ids"] = product_id
        if start_s is not None:
            params["start_date"] = _rfc3339(start_s)
        return await self._pages("/orders/historical/batch", params, orders.parse_orders_page)

    async def list_fills(self, order_id: str | None = None, product_id: str | None = None,
                         start_s: int | None = None) -> list[Fill]:
        params = {"limit": "250"}
        if order_id:
            params["order_ids"] = order_id
        if product_id:
            params["product_ids"] = product_id
        if start_s is not None:
            params["start_sequence_timestamp"] = _rfc3339(start_s)
        return await self._pages("/orders/historical/fills", params, orders.parse_fills)

    async def accounts(self) -> list[orders.Balance]:
        return await self._pages("/accounts", {"limit": "250"}, orders.parse_accounts)

    async def request_json(self, method: str, path: str, params: dict[str, str] | None = None,
                           body: Any = None) -> Any:
        """An idempotent request (a read, or a cancel): retried like the public ones."""
        for attempt in range(1, self._max_attempts + 1):
            await self.pacer.wait()
            self.counters["requests"] += 1
            status, raw, retry_after = await self._send(method, path, params, body)
            if status == 200:
                return _decoded(raw, path)
            self._count_failure(status)
            if status is not None and status < 500 and status != 429:
                raise RestError(f"{method} {path}: HTTP {status}: {raw[:200]!r}", status)
            if attempt < self._max_attempts:
                self.counters["retries"] += 1
                await asyncio.sleep(retry_after or self._backoff_s(attempt))
        raise RestError(f"{method} {path}: gave up after {self._max_attempts} attempts", status)

    async def _pages(self, path: str, params: dict[str, str],
                     parse: Callable[[Any], tuple[list[Any], str]]) -> list[Any]:
        found: list[Any] = []
        for _ in range(MAX_PAGES):
            items, cursor = _parsed(parse, await self.request_json("GET", path, params))
            found += items
            if not cursor:
                return found
            params = {**params, "cursor": cursor}
        raise RestError(f"GET {path}: more than {MAX_PAGES} pages")

    async def _send(self, method: str, path: str, params: dict[str, str] | None,
                    body: Any) -> tuple[int | None, bytes, float | None]:
        url = f"{self._base}{API}{path}"
        headers = {"Authorization": self._authorize(method, url)}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        started = time.perf_counter()
        try:
            async with self._session.request(method, url, params=params, data=data,
                                             headers=headers, timeout=self._timeout) as response:
                raw = await response.read()
                return (response.status, raw,
                        _retry_after_s(response.headers.get("Retry-After")))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, str(exc).encode(), None
        finally:
            self._observed(method, path, started)


def _rfc3339(time_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time_s))


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
