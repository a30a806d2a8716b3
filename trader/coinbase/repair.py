"""Gap repair: fetch the exchange's 1-minute candles for minutes the market holds as dirty."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from trader.coinbase.rest import Pacer, PublicRest, RestError, RestTimer
from trader.market.candles import Market, RepairSpan

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_S = 2.0
_RETRY = object()  # a fetch that failed for now; the span stays dirty


class CandleRepairer:
    """Runs repairs whenever woken; spans of one product are one REST request each."""

    name = "repair"

    def __init__(self, market: Market, rest_url: str, requests_per_s: float, *,
                 observe_rest: RestTimer | None = None) -> None:
        self.market = market
        self.rest_url = rest_url
        self.observe_rest = observe_rest
        self.pacer = Pacer(requests_per_s)
        self.rest: PublicRest | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            self.rest = PublicRest(session, self.rest_url, self.pacer, observe=self.observe_rest)
            while True:
                await self._wake.wait()
                self._wake.clear()
                while spans := self.market.repairs_needed():
                    if not await self._repair(spans):
                        await asyncio.sleep(RETRY_AFTER_FAILURE_S)

    async def _repair(self, spans: list[RepairSpan]) -> bool:
        """Fetch and apply every span; False when some must be tried again later."""
        results = await asyncio.gather(*(self._fetch(span) for span in spans))
        complete = True
        for span, result in zip(spans, results, strict=True):
            if result is _RETRY:
                complete = False
            else:
                self.market.apply_repair(span, result)
        return complete

    async def _fetch(self, span: RepairSpan) -> Any:
        assert self.rest is not None
        try:
            return await self.rest.candles(span.product_id, span.start_s, span.end_s, 60)
        except RestError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                log.error("repair of %s impossible (%s); keeping the candles as built",
                          span.product_id, exc)
                return None
            log.warning("repair of %s failed for now: %s", span.product_id, exc)
            return _RETRY

    def snapshot(self) -> dict[str, Any]:
        counters = dict(self.rest.counters) if self.rest else {}
        return {"counters": {f"rest_{k}": v for k, v in counters.items()}}
